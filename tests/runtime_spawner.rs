//! The fork server for shim commands (`runtime::spawner::Spawner`, `runtime::sys::zygote`)
//! with the real binary, without root: a command's stdin (large too), stdout, stderr and exit
//! status come back as `Command::output` gives them; concurrent commands each get their own;
//! a binary that cannot be a zygote falls back to `execve` (and no zygote is tried again);
//! no zygote outlives its spawner.

use std::ffi::OsString;
use std::path::Path;

use flotilla::runtime::spawner::Spawner;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn output_status_and_stdin_through_the_zygote() {
    let spawner = Spawner::new(Path::new(BIN));
    assert_eq!(spawner.zygote_pid(), None);
    let out = spawner
        .output(&args(&["netns", "bogus", "/x"]), b"")
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown operation \"bogus\""), "{err}");
    let zygote = spawner.zygote_pid().expect("a zygote");

    // stdin reaches the child (1 MiB: more than a pipe holds), which reads it to the end.
    let mut input = b"[".to_vec();
    input.resize(1 << 20, b' ');
    let out = spawner
        .output(&args(&["netns", "create-wired", "/nonexistent/x"]), &input)
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("read the interface settings"), "{err}");

    // Concurrent commands, each with its own streams and status.
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..16)
            .map(|i| {
                let spawner = &spawner;
                s.spawn(move || {
                    let op = format!("op{i}");
                    let out = spawner.output(&args(&["netns", &op, "/x"]), b"").unwrap();
                    assert_eq!(out.status.code(), Some(2));
                    let err = String::from_utf8_lossy(&out.stderr).into_owned();
                    assert!(err.contains(&format!("\"{op}\"")), "{err}");
                })
            })
            .collect();
        for r in runs {
            r.join().unwrap();
        }
    });
    assert_eq!(
        spawner.zygote_pid(),
        Some(zygote),
        "one zygote served them all"
    );
    drop(spawner);
    assert!(gone(zygote), "zygote {zygote} outlived its spawner");
}

#[test]
fn a_binary_without_a_zygote_falls_back_to_execve() {
    // `true` ignores its arguments and exits: the "zygote" is gone before serving anything.
    let spawner = Spawner::new(Path::new("/bin/true"));
    for _ in 0..3 {
        let out = spawner
            .output(&args(&["netns", "bogus", "/x"]), b"")
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(spawner.zygote_pid(), None, "no zygote tried again");
}
