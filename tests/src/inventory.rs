//! The demo inventory service (`edgegate.inventory.v1.Inventory`, proto/edgegate/inventory): the
//! gRPC upstream behind the gateway's transcoded REST route (`/api/v1/inventory`) and its gRPC
//! route. `demo-service --role grpc` serves it for the demo and compose; the gateway tests run
//! it in-process and read back every call it got ([`InventoryService::calls`]).
//!
//! A small in-memory catalog; each answer names the tenant and user the call's metadata carried
//! (the gateway's `x-tenant-id` and `x-user-id`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tonic::{Request, Response, Status};

/// The generated messages, client and server.
pub mod pb {
    tonic::include_proto!("edgegate.inventory.v1");
}

use pb::inventory_server::{Inventory, InventoryServer};
use pb::{
    GetItemRequest, Item, ListItemsRequest, ListItemsResponse, Reservation, ReserveItemRequest,
};

/// The service name the transcoder is configured with.
pub const SERVICE: &str = "edgegate.inventory.v1.Inventory";

/// The catalog every service starts with: (sku, name, available).
pub const CATALOG: [(&str, &str, i32); 3] = [
    ("sku-1", "Widget", 40),
    ("sku-2", "Gadget", 12),
    ("sku-3", "Gizmo", 0),
];

/// The most a reservation may hold.
pub const MAX_QUANTITY: i32 = 1000;

/// One call as the service decoded it, with the caller the metadata named.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Get(GetItemRequest),
    List(ListItemsRequest),
    Reserve(ReserveItemRequest),
}

#[derive(Debug, Default)]
struct Stock {
    /// sku -> (name, available).
    items: BTreeMap<String, (String, i32)>,
}

/// The service; clones share the catalog and the call record.
#[derive(Debug, Clone)]
pub struct InventoryService {
    stock: Arc<Mutex<Stock>>,
    calls: Arc<Mutex<Vec<Call>>>,
    reservations: Arc<AtomicU64>,
}

impl Default for InventoryService {
    fn default() -> Self {
        let items = CATALOG
            .iter()
            .map(|(sku, name, n)| (sku.to_string(), (name.to_string(), *n)))
            .collect();
        InventoryService {
            stock: Arc::new(Mutex::new(Stock { items })),
            calls: Arc::new(Mutex::new(Vec::new())),
            reservations: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl InventoryService {
    /// The tonic service to add to a server.
    pub fn server(&self) -> InventoryServer<InventoryService> {
        InventoryServer::new(self.clone())
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    fn record(&self, call: Call) {
        lock(&self.calls).push(call);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The caller the gateway named in the metadata: (tenant, user).
fn caller<T>(req: &Request<T>) -> (String, String) {
    let get = |name: &str| {
        req.metadata()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    (get("x-tenant-id"), get("x-user-id"))
}

fn check_sku(sku: &str) -> Result<(), Status> {
    let ok = (1..=32).contains(&sku.len())
        && sku
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(
            "sku must be 1 to 32 characters of a-z, 0-9 and '-'",
        ))
    }
}

fn not_found(sku: &str) -> Status {
    Status::not_found(format!("no item {sku} in the catalog"))
}

#[tonic::async_trait]
impl Inventory for InventoryService {
    async fn get_item(&self, req: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
        let (tenant, user) = caller(&req);
        let msg = req.into_inner();
        self.record(Call::Get(msg.clone()));
        check_sku(&msg.sku)?;
        let stock = lock(&self.stock);
        let (name, available) = stock
            .items
            .get(&msg.sku)
            .ok_or_else(|| not_found(&msg.sku))?;
        Ok(Response::new(Item {
            sku: msg.sku.clone(),
            name: name.clone(),
            available: *available,
            tenant,
            user,
        }))
    }

    async fn list_items(
        &self,
        req: Request<ListItemsRequest>,
    ) -> Result<Response<ListItemsResponse>, Status> {
        let (tenant, user) = caller(&req);
        let msg = req.into_inner();
        self.record(Call::List(msg));
        let stock = lock(&self.stock);
        let items = stock
            .items
            .iter()
            .filter(|(_, (_, n))| *n >= msg.min_available)
            .map(|(sku, (name, n))| Item {
                sku: sku.clone(),
                name: name.clone(),
                available: *n,
                tenant: tenant.clone(),
                user: user.clone(),
            })
            .collect();
        Ok(Response::new(ListItemsResponse { items }))
    }

    async fn reserve_item(
        &self,
        req: Request<ReserveItemRequest>,
    ) -> Result<Response<Reservation>, Status> {
        let (tenant, user) = caller(&req);
        let msg = req.into_inner();
        self.record(Call::Reserve(msg.clone()));
        check_sku(&msg.sku)?;
        if !(1..=MAX_QUANTITY).contains(&msg.quantity) {
            return Err(Status::invalid_argument(format!(
                "quantity must be 1 to {MAX_QUANTITY}"
            )));
        }
        let mut stock = lock(&self.stock);
        let (_, available) = stock
            .items
            .get_mut(&msg.sku)
            .ok_or_else(|| not_found(&msg.sku))?;
        if *available < msg.quantity {
            return Err(Status::failed_precondition(format!(
                "only {available} of {} available",
                msg.sku
            )));
        }
        *available -= msg.quantity;
        let id = self.reservations.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Response::new(Reservation {
            reservation_id: format!("res-{id}"),
            sku: msg.sku,
            quantity: msg.quantity,
            note: msg.note,
            available: *available,
            tenant,
            user,
        }))
    }
}
