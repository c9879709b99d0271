//! Replays every fuzz target's committed corpus (`gateway/fuzz/corpus/<target>/`): the seeds,
//! what `make fuzz` found worth keeping, and every crash it ever found, each a regression test.
//! Runs on the stable toolchain in `make test`; `make fuzz` does the fuzzing itself.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus for {target}");
    for input in &inputs {
        let data = std::fs::read(input).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", input.display());
    }
    eprintln!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn config_loader_corpus() {
    replay("config_loader", rustygate::fuzzing::config_loader);
}

#[test]
fn path_and_routes_corpus() {
    replay("path_and_routes", rustygate::fuzzing::path_and_routes);
}

#[test]
fn header_rules_corpus() {
    replay("header_rules", rustygate::fuzzing::header_rules);
}

#[test]
fn jwt_token_corpus() {
    replay("jwt_token", rustygate::fuzzing::jwt_token);
}

#[cfg(feature = "wasm")]
#[test]
fn plugin_abi_corpus() {
    replay("plugin_abi", rustygate::fuzzing::plugin_abi);
}
