//! Docker's short flags that collide with Compose's global ones. Compose's `-f` (stack file) and
//! `-p` (project name) are global, but after some Docker commands, which read no stack file,
//! `-f` and `-p` mean what Docker users expect: `--force`, `--follow`, `--publish`,
//! `--password`. One table says which, and [`docker_short_flags`] rewrites the command line
//! before clap parses it.

use std::ffi::OsString;

/// Global options that take a value (their value is not the command).
const GLOBAL_WITH_VALUE: &[&str] = &[
    "-f",
    "--file",
    "-p",
    "--project-name",
    "--profile",
    "--env-file",
    "--project-directory",
    "--data-root",
    "--config",
    "-H",
    "--host",
];

/// Options of `container run/create` that take a value (skipped when looking for the image,
/// after which the words belong to the container's command).
const RUN_WITH_VALUE: &[&str] = &[
    "-e",
    "--env",
    "-v",
    "--volume",
    "--tmpfs",
    "-p",
    "--publish",
    "--name",
    "--hostname",
    "-m",
    "--memory",
    "--cpus",
    "--pids-limit",
    "-u",
    "--user",
    "--cap-add",
    "--cap-drop",
    "--entrypoint",
    "-w",
    "--workdir",
    "--stop-signal",
    "--stop-timeout",
    "--network",
    "--net",
    "--network-alias",
    "--net-alias",
    "--dns",
    "-l",
    "--label",
    "--env-file",
    "--data-root",
    "--config",
    "-H",
    "--host",
    "-f",
    "--file",
    "--project-name",
    "--profile",
    "--project-directory",
];

/// What to rewrite after a command, and whether the options end at the first positional word
/// (`container run IMAGE CMD…`: the command's own words are never touched).
struct Rule {
    rewrite: &'static [(&'static str, &'static str)],
    options_end_at_positional: bool,
}

fn rule(path: &[&str]) -> Option<Rule> {
    let (rewrite, options_end_at_positional): (&'static [(&'static str, &'static str)], bool) =
        match path {
            ["rmi"] | ["image", "rm" | "remove" | "prune"] | ["builder", "prune"] => {
                (&[("-f", "--force")], false)
            }
            ["image", "build"] => (&[("-f", "--dockerfile"), ("--file", "--dockerfile")], false),
            ["login"] => (&[("-p", "--password")], false),
            ["container", "run" | "create"] => (&[("-p", "--publish")], true),
            ["container", "rm" | "remove"] => (&[("-f", "--force")], false),
            ["container", "logs"] | ["logs"] | ["compose", "logs"] => {
                (&[("-f", "--follow")], false)
            }
            ["rm"] | ["compose", "rm"] => (&[("-f", "--force")], false),
            ["network" | "volume", "rm" | "remove" | "prune"] => (&[("-f", "--force")], false),
            ["system", "prune"] => (&[("-f", "--force")], false),
            ["network", "disconnect"] => (&[("-f", "--force")], false),
            ["network" | "volume", "ls" | "list"] => (&[("-f", "--filter")], false),
            _ => return None,
        };
    Some(Rule {
        rewrite,
        options_end_at_positional,
    })
}

/// Rewrites Docker's colliding short flags after the commands of [`rule`]; every other command
/// line is returned unchanged.
pub fn docker_short_flags(args: Vec<OsString>) -> Vec<OsString> {
    let words: Vec<Option<&str>> = args.iter().map(|a| a.to_str()).collect();
    // The command path: the first word that is neither an option nor a global option's value,
    // and its subcommand for the `image`, `container`, `compose`, `network`, `volume` and
    // `builder` groups.
    let mut i = 1;
    let mut path: Vec<&str> = Vec::new();
    while i < words.len() && path.len() < 2 {
        match words[i] {
            Some("--") | None => break,
            Some(w)
                if (path.is_empty() || path == ["compose"]) && GLOBAL_WITH_VALUE.contains(&w) =>
            {
                i += 2
            }
            Some(w) if w.starts_with('-') => i += 1,
            Some(w) => {
                path.push(w);
                i += 1;
                if !matches!(
                    w,
                    "image" | "container" | "compose" | "network" | "volume" | "builder" | "system"
                ) {
                    break;
                }
            }
        }
    }
    let Some(rule) = rule(&path) else {
        return args;
    };
    let mut out = args.clone();
    while i < words.len() {
        let Some(word) = words[i] else { break };
        if word == "--" {
            break;
        }
        if let Some((_, long)) = rule.rewrite.iter().find(|(short, _)| *short == word) {
            out[i] = OsString::from(long);
            // `--publish` and `--password` take a value, which is never rewritten.
            i += if matches!(*long, "--publish" | "--password") {
                2
            } else {
                1
            };
            continue;
        }
        if rule.options_end_at_positional {
            if RUN_WITH_VALUE.contains(&word) {
                i += 2;
                continue;
            }
            if !word.starts_with('-') {
                break;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::docker_short_flags;
    use std::ffi::OsString;

    fn rewrite(words: &[&str]) -> Vec<String> {
        let args: Vec<OsString> = words.iter().map(OsString::from).collect();
        docker_short_flags(args)
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn compose_commands_get_docker_short_flags() {
        assert_eq!(
            rewrite(&["flotilla", "-f", "a.yaml", "logs", "-f", "web"]),
            ["flotilla", "-f", "a.yaml", "logs", "--follow", "web"]
        );
        assert_eq!(
            rewrite(&["flotilla", "compose", "-p", "demo", "rm", "-f", "-s"]),
            ["flotilla", "compose", "-p", "demo", "rm", "--force", "-s"]
        );
        assert_eq!(
            rewrite(&["flotilla", "compose", "logs", "-f"]),
            ["flotilla", "compose", "logs", "--follow"]
        );
        assert_eq!(
            rewrite(&["flotilla", "-f", "a.yaml", "up", "-d"]),
            ["flotilla", "-f", "a.yaml", "up", "-d"]
        );
    }

    #[test]
    fn system_prune_f_is_force() {
        assert_eq!(
            rewrite(&["flotilla", "system", "prune", "-a", "-f"]),
            ["flotilla", "system", "prune", "-a", "--force"]
        );
    }

    #[test]
    fn image_build_file_is_the_dockerfile() {
        assert_eq!(
            rewrite(&["flotilla", "image", "build", "-t", "x", "-f", "D", "."]),
            [
                "flotilla",
                "image",
                "build",
                "-t",
                "x",
                "--dockerfile",
                "D",
                "."
            ]
        );
        assert_eq!(
            rewrite(&["flotilla", "image", "build", "--file", "D", "."]),
            ["flotilla", "image", "build", "--dockerfile", "D", "."]
        );
        // `flotilla build` is the stack's: -f stays its stack file.
        assert_eq!(
            rewrite(&["flotilla", "-f", "s.yaml", "build", "web"]),
            ["flotilla", "-f", "s.yaml", "build", "web"]
        );
    }
}
