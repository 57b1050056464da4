//! `/api/v1/inventory`: REST/JSON in front of the gRPC inventory service, through Envoy's
//! grpc_json_transcoder after jwt_auth, the tenant and the limits. The in-process inventory
//! service records each message it decoded, so the tests assert what the gRPC upstream saw.

use crate::prelude::*;
use gateway_tests::inventory::pb::inventory_client::InventoryClient;
use gateway_tests::inventory::pb::{GetItemRequest, ReserveItemRequest};
use gateway_tests::inventory::Call;

fn calls(gw: &Gateway) -> Vec<Call> {
    gw.grpc.inventory.calls()
}

fn reserve(gw: &Gateway, sku: &str, body: &str) -> reqwest::RequestBuilder {
    client()
        .post(gw.url(&format!("/api/v1/inventory/items/{sku}/reservations")))
        .bearer_auth(token("user-1", "acme", "orders:read orders:write"))
        .header("content-type", "application/json")
        .body(body.to_string())
}

fn assert_json(resp: &reqwest::Response, what: &str) {
    let ct = header(resp, "content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "{what}: content-type {ct}"
    );
}

#[tokio::test]
async fn rest_reads_become_grpc_calls_with_the_verified_identity() {
    let gw = Gateway::start(Opts::default()).await;
    let resp = gw
        .get("/api/v1/inventory/items/sku-1")
        .header("x-tenant-id", "globex")
        .header("x-user-id", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_json(&resp, "GetItem");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "sku": "sku-1", "name": "Widget", "available": 40,
                "tenant": "acme", "user": "user-1" })
    );
    assert_eq!(
        calls(&gw),
        [Call::Get(GetItemRequest {
            sku: "sku-1".into()
        })]
    );
    // The metadata the service got: the gateway's identity, never the client's token.
    let md = gw.grpc.last();
    assert_eq!(md.get("x-tenant-id").unwrap(), "acme");
    assert_eq!(md.get("content-type").unwrap(), "application/grpc");

    // A query parameter fills the request message's field of that name.
    let (status, body) = answer(gw.get("/api/v1/inventory/items?min_available=1")).await;
    assert_eq!(status, 200, "{body}");
    let skus: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["sku-1", "sku-2"], "{body}");
}

#[tokio::test]
async fn a_json_body_and_the_path_become_the_request_message() {
    let gw = Gateway::start(Opts::default()).await;
    let resp = reserve(&gw, "sku-2", r#"{"quantity": 3, "note": "for order 7"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_json(&resp, "ReserveItem");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["reservation_id"], "res-1", "{body}");
    assert_eq!(body["available"], 9, "{body}");
    assert_eq!(body["tenant"], "acme", "{body}");
    assert_eq!(
        calls(&gw),
        [Call::Reserve(ReserveItemRequest {
            sku: "sku-2".into(),
            quantity: 3,
            note: "for order 7".into(),
        })]
    );
}

/// gRPC errors reach the client as the mapped HTTP status with google.rpc.Status as JSON.
#[tokio::test]
async fn grpc_errors_become_their_http_status_with_a_json_body() {
    let gw = Gateway::start(Opts::default()).await;
    let cases = [
        (
            gw.get("/api/v1/inventory/items/sku-404"),
            404,
            5,
            "no item sku-404",
        ),
        (
            gw.get("/api/v1/inventory/items/BAD_SKU"),
            400,
            3,
            "sku must be",
        ),
        (
            reserve(&gw, "sku-1", r#"{"quantity": 0}"#),
            400,
            3,
            "quantity must be",
        ),
        (
            reserve(&gw, "sku-3", r#"{"quantity": 1}"#),
            400,
            9,
            "only 0 of sku-3",
        ),
    ];
    for (req, status, code, message) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{message}");
        assert_json(&resp, message);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains(message),
            "{body}"
        );
    }
    assert_eq!(calls(&gw).len(), 4, "each reached the service");
}

/// A body that is not the request message's JSON is refused by the transcoder: 400 with the
/// gateway's JSON error body, and the service is never called.
#[tokio::test]
async fn malformed_requests_are_a_json_400_and_never_reach_the_service() {
    let gw = Gateway::start(Opts::default()).await;
    let cases = [
        (reserve(&gw, "sku-1", r#"{"quantity": "#), "truncated JSON"),
        (
            reserve(&gw, "sku-1", r#"{"quantity": "three"}"#),
            "a string for an int32",
        ),
        (
            gw.get("/api/v1/inventory/items?colour=red"),
            "an unknown query parameter",
        ),
    ];
    for (req, what) in cases {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{what}");
        assert_json(&resp, what);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "bad_request", "{what}: {body}");
    }
    assert_eq!(calls(&gw), [], "no call reached the service");

    // Envoy's transcoder drops body fields the message does not have (there is no option to
    // refuse them, unlike query parameters): the service gets the known ones only.
    let resp = reserve(&gw, "sku-1", r#"{"quantity": 1, "colour": "red"}"#);
    assert_eq!(resp.send().await.unwrap().status(), 200);
    assert_eq!(
        calls(&gw),
        [Call::Reserve(ReserveItemRequest {
            sku: "sku-1".into(),
            quantity: 1,
            note: String::new(),
        })]
    );
}

/// On the inventory route the transcoder answers what no binding names: nothing reaches the
/// gRPC service as a raw HTTP request.
#[tokio::test]
async fn paths_and_methods_no_binding_names_are_a_json_404() {
    let gw = Gateway::start(Opts::default()).await;
    let before = gw.grpc.metadata.lock().unwrap().len();
    let writer = token("user-1", "acme", "orders:read orders:write");
    for (method, path) in [
        ("GET", "/api/v1/inventory/items/sku-1/extra"),
        ("DELETE", "/api/v1/inventory/items/sku-1"),
        ("PUT", "/api/v1/inventory/items/sku-1/reservations"),
    ] {
        let req = client()
            .request(method.parse().unwrap(), gw.url(path))
            .bearer_auth(&writer);
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 404, "{method} {path}");
        assert_json(&resp, path);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{method} {path}: {body}");
    }
    assert_eq!(gw.grpc.metadata.lock().unwrap().len(), before);
}

#[tokio::test]
async fn no_token_is_a_401_and_a_read_token_cannot_reserve_before_any_upstream_call() {
    let gw = Gateway::start(Opts::default()).await;
    let calls_before = gw.grpc.metadata.lock().unwrap().len();
    let resp = client()
        .get(gw.url("/api/v1/inventory/items/sku-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = client()
        .post(gw.url("/api/v1/inventory/items/sku-1/reservations"))
        .bearer_auth(token("user-1", "acme", "orders:read"))
        .header("content-type", "application/json")
        .body(r#"{"quantity": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(calls(&gw), []);
    assert_eq!(gw.grpc.metadata.lock().unwrap().len(), calls_before);
}

/// The same service over gRPC on the gateway's gRPC route, with the same token rule.
#[tokio::test]
async fn the_inventory_also_answers_grpc_through_the_gateway() {
    let gw = Gateway::start(Opts::default()).await;
    let mut client = InventoryClient::new(grpc_channel(&gw).await);
    let request = |auth: Option<String>| {
        let mut req = tonic::Request::new(GetItemRequest {
            sku: "sku-2".into(),
        });
        if let Some(auth) = auth {
            req.metadata_mut()
                .insert("authorization", auth.parse().unwrap());
        }
        req
    };
    let err = client.get_item(request(None)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
    let auth = format!("Bearer {}", token("user-9", "initech", "orders:read"));
    let item = client
        .get_item(request(Some(auth)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((item.name.as_str(), item.available), ("Gadget", 12));
    assert_eq!(
        (item.tenant.as_str(), item.user.as_str()),
        ("initech", "user-9")
    );
}
