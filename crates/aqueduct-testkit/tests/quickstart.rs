//! `make quickstart` reaches "data flowing" with the mirrored count matching the source, and stops everything.

#[test]
fn the_quickstart_shows_data_flowing_and_stops_cleanly() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aqueduct-quickstart"))
        .output()
        .expect("run the quickstart");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("==> data flowing: all 10000 records mirrored, lag 0"),
        "{stdout}"
    );
    assert!(stdout.contains("/metrics"), "{stdout}");
    assert!(stdout.contains("quickstart done"), "{stdout}");
}
