//! Every port of the demo, their `DEMO_*_PORT` variables, and the template's port placeholders.

use anyhow::{bail, Context, Result};

/// Every port of the demo, all on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub gateway: u16,
    pub gateway_tls: u16,
    /// The mTLS listener (partners' client certificates).
    pub gateway_mtls: u16,
    pub admin: u16,
    pub orders_v1: u16,
    pub orders_v2: u16,
    pub users: u16,
    pub products: u16,
    pub events: u16,
    pub grpc: u16,
    pub idp: u16,
    pub rls_grpc: u16,
    pub rls_http: u16,
    pub redis: u16,
}

impl Ports {
    /// The documented defaults (docs/demo.md, docker-compose).
    pub const DEFAULT: Ports = Ports {
        gateway: 10000,
        gateway_tls: 10443,
        gateway_mtls: 10444,
        admin: 9901,
        orders_v1: 10001,
        orders_v2: 10002,
        users: 10003,
        products: 10004,
        events: 10005,
        grpc: 10006,
        idp: 10010,
        rls_grpc: 10081,
        rls_http: 10080,
        redis: 16379,
    };

    /// Every port chosen by the OS.
    pub const AUTO: Ports = Ports {
        gateway: 0,
        gateway_tls: 0,
        gateway_mtls: 0,
        admin: 0,
        orders_v1: 0,
        orders_v2: 0,
        users: 0,
        products: 0,
        events: 0,
        grpc: 0,
        idp: 0,
        rls_grpc: 0,
        rls_http: 0,
        redis: 0,
    };

    /// Each port with the environment variable that overrides it.
    pub fn named(&mut self) -> [(&'static str, &mut u16); 14] {
        [
            ("DEMO_GATEWAY_PORT", &mut self.gateway),
            ("DEMO_GATEWAY_TLS_PORT", &mut self.gateway_tls),
            ("DEMO_GATEWAY_MTLS_PORT", &mut self.gateway_mtls),
            ("DEMO_ADMIN_PORT", &mut self.admin),
            ("DEMO_ORDERS_V1_PORT", &mut self.orders_v1),
            ("DEMO_ORDERS_V2_PORT", &mut self.orders_v2),
            ("DEMO_USERS_PORT", &mut self.users),
            ("DEMO_PRODUCTS_PORT", &mut self.products),
            ("DEMO_EVENTS_PORT", &mut self.events),
            ("DEMO_GRPC_PORT", &mut self.grpc),
            ("DEMO_IDP_PORT", &mut self.idp),
            ("DEMO_RLS_GRPC_PORT", &mut self.rls_grpc),
            ("DEMO_RLS_HTTP_PORT", &mut self.rls_http),
            ("DEMO_REDIS_PORT", &mut self.redis),
        ]
    }

    /// The defaults with every `DEMO_*_PORT` variable that is set applied.
    pub fn from_env() -> Result<Ports> {
        let mut ports = Ports::DEFAULT;
        for (var, port) in ports.named() {
            if let Ok(v) = std::env::var(var) {
                *port = v
                    .trim()
                    .parse()
                    .with_context(|| format!("{var}={v} is not a port"))?;
            }
        }
        Ok(ports)
    }

    /// The port of a [`ROLES`](super::ROLES) entry.
    pub fn role(&self, role: &str) -> Result<u16> {
        Ok(match role {
            "orders-v1" => self.orders_v1,
            "orders-v2" => self.orders_v2,
            "users" => self.users,
            "products" => self.products,
            "events" => self.events,
            "grpc" => self.grpc,
            other => bail!("unknown demo role {other}"),
        })
    }

    pub(super) fn role_mut(&mut self, role: &str) -> Result<&mut u16> {
        Ok(match role {
            "orders-v1" => &mut self.orders_v1,
            "orders-v2" => &mut self.orders_v2,
            "users" => &mut self.users,
            "products" => &mut self.products,
            "events" => &mut self.events,
            "grpc" => &mut self.grpc,
            other => bail!("unknown demo role {other}"),
        })
    }

    /// The gateway template's port placeholders and their values.
    pub fn template_vars(&self) -> [(&'static str, u16); 12] {
        [
            ("ADMIN_PORT", self.admin),
            ("GATEWAY_PORT", self.gateway),
            ("GATEWAY_TLS_PORT", self.gateway_tls),
            ("GATEWAY_MTLS_PORT", self.gateway_mtls),
            ("ORDERS_V1_PORT", self.orders_v1),
            ("ORDERS_V2_PORT", self.orders_v2),
            ("USERS_PORT", self.users),
            ("PRODUCTS_PORT", self.products),
            ("EVENTS_PORT", self.events),
            ("GRPC_PORT", self.grpc),
            ("JWKS_PORT", self.idp),
            ("RLS_PORT", self.rls_grpc),
        ]
    }
}
