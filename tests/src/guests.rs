//! The hostile test components, built for wasm32-wasip2 by `tests/build.rs` from the features
//! of `tests/guests`: one path constant per component, `ALL`, and `foreach_hostile!`.
//!
//! A host test file lists every component with
//! `itglue_sim::foreach_hostile!(assert_test_exists);` so that a new component cannot go
//! untested.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
