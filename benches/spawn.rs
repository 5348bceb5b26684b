//! One short `flotilla shim …` command (`shim netns bogus /x`: a usage error, exit 2 at once)
//! run through the runtime's fork server ([`flotilla::runtime::spawner::Spawner`]) and by an
//! `execve` of the sealed copy of the binary (the fallback, and how every shim command ran
//! before the zygote), alternated; medians. No root needed. `FLOTILLA_BIN` (default: the
//! built `flotilla`), `RUNS` (default 300). `cargo bench --bench spawn`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let exe = std::env::var_os("FLOTILLA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_flotilla")));
    let n: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
        .max(1);
    let args: Vec<OsString> = vec!["netns".into(), "bogus".into(), "/x".into()];
    let spawner = flotilla::runtime::spawner::Spawner::new(&exe);
    let copy = flotilla::runtime::sys::exe::shared_copy(&exe).expect("sealed copy");
    let (mut forked, mut executed) = (Vec::new(), Vec::new());
    for i in 0..n + 5 {
        let t = Instant::now();
        let o = spawner.output(&args, b"").expect("through the zygote");
        let f = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        let t = Instant::now();
        let o = flotilla::runtime::sys::exe::sealed_command(&exe, &copy)
            .args(&args)
            .output()
            .expect("execve");
        let e = t.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(o.status.code(), Some(2), "{o:?}");
        if i >= 5 {
            forked.push(f);
            executed.push(e);
        }
    }
    assert!(spawner.zygote_pid().is_some(), "the zygote was not used");
    for (name, mut v) in [
        ("fork from the zygote", forked),
        ("execve of the sealed copy", executed),
    ] {
        v.sort_by(f64::total_cmp);
        println!(
            "{name:<28} median {:.3} ms  (min {:.3}, p90 {:.3}, n={})",
            v[v.len() / 2],
            v[0],
            v[(v.len() * 9 / 10).min(v.len() - 1)],
            v.len()
        );
    }
}
