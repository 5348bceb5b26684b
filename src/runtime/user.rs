//! The `user` option resolved the way Docker does it, from the text of the container's own
//! `/etc/passwd` and `/etc/group` (read by the runtime inside the container's root; this module
//! only parses): names or numbers for the user and the group, the primary group from the passwd
//! entry, supplementary groups from the group file's member lists, and the home directory.
//! Pure, unit-tested.

/// Why a user could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UnknownUser { user: String },
    #[error("unable to find group {group}: no matching entries in group file")]
    UnknownGroup { group: String },
    #[error("user {user:?}: invalid (expected name, uid, name:group or uid:gid)")]
    Invalid { user: String },
}

/// A resolved user: ids, supplementary groups (without the primary one) and home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || f.len() < 6 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || f.len() < 3 {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolves `user` (`""` means root) against the container's passwd and group files (missing
/// files: empty text). Numeric ids need no entry; names must have one.
pub fn resolve(user: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if g.is_some_and(|g| g.is_empty() || g.contains(':')) || (g.is_some() && u.is_empty()) {
        return Err(UserError::Invalid {
            user: user.to_string(),
        });
    }
    let u = if u.is_empty() { "0" } else { u };
    let (uid, entry) = match u.parse::<u32>() {
        Ok(uid) => (uid, passwd_entries(passwd).find(|e| e.uid == uid)),
        Err(_) => {
            let e = passwd_entries(passwd)
                .find(|e| e.name == u)
                .ok_or_else(|| UserError::UnknownUser {
                    user: u.to_string(),
                })?;
            (e.uid, Some(e))
        }
    };
    let gid = match g {
        None => entry.as_ref().map(|e| e.gid).unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(group)
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::UnknownGroup {
                    group: g.to_string(),
                })?,
        },
    };
    let mut additional_gids = Vec::new();
    if let Some(e) = &entry {
        for grp in group_entries(group) {
            if grp.members.contains(&e.name)
                && grp.gid != gid
                && !additional_gids.contains(&grp.gid)
            {
                additional_gids.push(grp.gid);
            }
        }
    }
    let home = entry
        .as_ref()
        .map(|e| e.home.to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        # comment\n\
        app:x:1000:1000:app:/home/app:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\n\
        daemon:x:1:\n\
        wheel:x:10:root,app\n\
        app:x:1000:\n\
        audio:x:29:app\n\
        nogroup:x:65534:\n";

    fn r(user: &str) -> Result<ResolvedUser, UserError> {
        resolve(user, PASSWD, GROUP)
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(
            r("").unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![10],
                home: "/root".into()
            }
        );
        assert_eq!(
            r("app").unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29],
                home: "/home/app".into()
            }
        );
        let nobody = r("nobody").unwrap();
        assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
        assert_eq!(nobody.additional_gids, Vec::<u32>::new());
        let n = r("1000:1000").unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (1000, 1000, "/home/app"));
        let n = r("4242").unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (4242, 0, "/"));
        assert_eq!(r("4242:7").unwrap().gid, 7);
        assert_eq!(r("app:audio").unwrap().gid, 29);
        assert_eq!(r("app:audio").unwrap().additional_gids, vec![10]);
        assert_eq!(r("daemon:0").unwrap().gid, 0);
    }

    #[test]
    fn errors() {
        assert_eq!(
            r("ghost").unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:ghosts").unwrap_err().to_string(),
            "unable to find group ghosts: no matching entries in group file"
        );
        assert!(matches!(r("app:"), Err(UserError::Invalid { .. })));
        assert!(matches!(r(":1"), Err(UserError::Invalid { .. })));
        assert!(resolve("1:2", "", "").is_ok());
        assert!(resolve("root", "", "").is_err());
    }
}
