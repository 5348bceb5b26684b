//! The object records the state database keeps: containers, networks, volumes and projects.
//! Each carries the fields every object has (id, name, labels, creation time) and a free-form
//! JSON `body` that later issues fill (a container's OCI config path and state, a network's
//! subnet, …). Records are stored as JSON so adding a body field needs no schema migration.

use std::collections::BTreeMap;

use redb::{MultimapTableDefinition, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One kind of object record, with its tables in the state database.
pub trait Object: Serialize + DeserializeOwned + Clone + std::fmt::Debug {
    /// The kind in messages and events (`container`, `network`, `volume`, `project`).
    const KIND: &'static str;
    /// id → record (JSON).
    const RECORDS: TableDefinition<'static, &'static str, &'static [u8]>;
    /// name → id; a name is unique within its kind.
    const BY_NAME: TableDefinition<'static, &'static str, &'static str>;
    /// `key\0value` → ids, for listing by label.
    const BY_LABEL: MultimapTableDefinition<'static, &'static str, &'static str>;

    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn labels(&self) -> &BTreeMap<String, String>;
}

macro_rules! record {
    ($(#[$doc:meta])* $ty:ident, $kind:literal, $table:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        pub struct $ty {
            /// 64 hexadecimal digits, assigned at creation ([`super::new_id`]).
            pub id: String,
            /// Unique among the objects of this kind.
            pub name: String,
            #[serde(default)]
            pub labels: BTreeMap<String, String>,
            /// Creation time, milliseconds since the Unix epoch.
            pub created: u64,
            /// What later issues keep about the object.
            #[serde(default)]
            pub body: serde_json::Value,
        }

        impl $ty {
            /// A new record with a fresh id, created now, with an empty body.
            pub fn new(name: &str, labels: BTreeMap<String, String>) -> Result<Self, super::StoreError> {
                Ok(Self {
                    id: super::new_id()?,
                    name: name.to_string(),
                    labels,
                    created: super::now_ms(),
                    body: serde_json::Value::Null,
                })
            }
        }

        impl Object for $ty {
            const KIND: &'static str = $kind;
            const RECORDS: TableDefinition<'static, &'static str, &'static [u8]> =
                TableDefinition::new($table);
            const BY_NAME: TableDefinition<'static, &'static str, &'static str> =
                TableDefinition::new(concat!($table, ".by_name"));
            const BY_LABEL: MultimapTableDefinition<'static, &'static str, &'static str> =
                MultimapTableDefinition::new(concat!($table, ".by_label"));

            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn labels(&self) -> &BTreeMap<String, String> {
                &self.labels
            }
        }
    };
}

record!(
    /// A container: `<project>-<service>-<n>` or a user-chosen name.
    ContainerRecord,
    "container",
    "containers"
);
record!(
    /// A network: `<project>_default`, or declared in a stack, or created by hand.
    NetworkRecord,
    "network",
    "networks"
);
record!(
    /// A named volume: `<project>_<name>` or created by hand.
    VolumeRecord,
    "volume",
    "volumes"
);
record!(
    /// A project (stack): its name and, in the body, the canonical config it was deployed from.
    ProjectRecord,
    "project",
    "projects"
);

/// The label index key for `key=value`.
pub(super) fn label_key(key: &str, value: &str) -> String {
    format!("{key}\0{value}")
}
