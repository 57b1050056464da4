//! Test support shared by the integration tests (`gateway-tests`) and ratelimit-service's own
//! tests: [`redis`] runs real Redis processes (a standalone server and a 3-primary cluster) on
//! free loopback ports; [`wait`] polls a condition with a deadline instead of sleeping.

pub mod redis;
pub mod wait;
