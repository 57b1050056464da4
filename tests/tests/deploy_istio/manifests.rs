//! The manifests themselves: every document a named Kubernetes object, every file listed in the kustomization.

use crate::prelude::*;
use crate::support::{istio_dir, load, manifest_files, of_kind, yaml_documents};

#[test]
fn every_manifest_is_a_named_kubernetes_object_listed_in_the_kustomization() {
    let docs = load();
    let expected_api = |kind: &str| match kind {
        "WasmPlugin" => Some("extensions.istio.io/v1alpha1"),
        "EnvoyFilter" => Some("networking.istio.io/v1alpha3"),
        "ServiceEntry" | "DestinationRule" | "Gateway" | "VirtualService" => {
            Some("networking.istio.io/v1")
        }
        "Deployment" => Some("apps/v1"),
        "Service" | "ConfigMap" | "Namespace" => Some("v1"),
        _ => None,
    };
    let dns_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    let mut seen = BTreeSet::new();
    for doc in &docs {
        let kind = doc.str_at("/kind");
        let api = doc.str_at("/apiVersion");
        assert_eq!(
            Some(api),
            expected_api(kind),
            "{}: unexpected apiVersion/kind {api} {kind}",
            doc.file
        );
        let name = doc.str_at("/metadata/name");
        assert!(dns_name(name), "{}: bad metadata.name {name:?}", doc.file);
        if kind == "Namespace" {
            assert!(doc.value["metadata"].get("namespace").is_none());
        } else {
            let ns = doc.str_at("/metadata/namespace");
            assert!(dns_name(ns), "{}: bad namespace {ns:?}", doc.id());
        }
        assert!(
            seen.insert(doc.id()),
            "{}: {} declared twice",
            doc.file,
            doc.id()
        );
    }
    // Every namespace used is Istio's or declared here.
    let declared: BTreeSet<&str> = of_kind(&docs, "Namespace")
        .iter()
        .map(|d| d.name())
        .collect();
    for doc in &docs {
        let ns = doc.namespace();
        assert!(
            ns.is_empty() || ns == "istio-system" || declared.contains(ns),
            "{}: namespace {ns} is not declared in envoy/istio/",
            doc.id()
        );
    }

    let text = std::fs::read_to_string(istio_dir().join("kustomization.yaml")).unwrap();
    let kustomization = &yaml_documents("kustomization.yaml", &text)[0];
    assert_eq!(kustomization["kind"], json!("Kustomization"));
    assert_eq!(
        kustomization["apiVersion"],
        json!("kustomize.config.k8s.io/v1beta1")
    );
    assert!(
        kustomization.get("namespace").is_none(),
        "a kustomization namespace would move the istio-system objects"
    );
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("kustomization.yaml: no resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = manifest_files().into_iter().collect();
    assert_eq!(
        listed, files,
        "kustomization.yaml must list exactly the manifest files"
    );
}
