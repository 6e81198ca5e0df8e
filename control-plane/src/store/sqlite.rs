//! The embedded store: SQLite in WAL mode. One table holds every revision of every key (a
//! delete is a row without a value), so past revisions and change feeds are plain queries;
//! compaction deletes the rows no revision still needs.
use super::{Event, EventKind, Listing, Object, Revision, Store, StoreError};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::Path;
use std::sync::Mutex;

pub struct SqliteStore {
    connection: Mutex<Connection>,
}

fn backend(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |error| StoreError::Backend {
        operation,
        message: error.to_string(),
    }
}

/// The first key after every key starting with `prefix` (keys are UTF-8 paths).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS revisions (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    value BLOB,
    create_revision INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS revisions_by_key ON revisions (key, revision);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
";

impl SqliteStore {
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let connection = Connection::open(path).map_err(backend("open"))?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(backend("enable WAL"))?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend("set synchronous"))?;
        connection
            .execute_batch(SCHEMA)
            .map_err(backend("create schema"))?;
        Ok(SqliteStore {
            connection: Mutex::new(connection),
        })
    }

    fn with<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Transaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.lock().map_err(|_| StoreError::Backend {
            operation,
            message: "connection lock poisoned".into(),
        })?;
        let transaction = connection.transaction().map_err(backend(operation))?;
        let result = f(&transaction)?;
        transaction.commit().map_err(backend(operation))?;
        Ok(result)
    }
}

fn meta(transaction: &Transaction, name: &str) -> Result<Revision, StoreError> {
    transaction
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| {
            row.get::<_, i64>(0)
        })
        .map(|value| value as Revision)
        .map_err(backend("read meta"))
}

/// The key's latest row, if it exists and is not a delete.
fn current(transaction: &Transaction, key: &str) -> Result<Option<Object>, StoreError> {
    let row = transaction
        .query_row(
            "SELECT revision, value, create_revision FROM revisions WHERE key = ?1 ORDER BY revision DESC LIMIT 1",
            [key],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Option<Vec<u8>>>(1)?, row.get::<_, i64>(2)?)),
        )
        .optional()
        .map_err(backend("read key"))?;
    Ok(row.and_then(|(revision, value, create_revision)| {
        value.map(|value| Object {
            key: key.to_string(),
            value,
            create_revision: create_revision as Revision,
            mod_revision: revision as Revision,
        })
    }))
}

fn write(
    transaction: &Transaction,
    key: &str,
    value: Option<&[u8]>,
    create_revision: Option<Revision>,
) -> Result<Revision, StoreError> {
    let revision = meta(transaction, "revision")? + 1;
    transaction
        .execute(
            "UPDATE meta SET value = ?1 WHERE name = 'revision'",
            [revision as i64],
        )
        .map_err(backend("bump revision"))?;
    transaction
        .execute(
            "INSERT INTO revisions (revision, key, value, create_revision) VALUES (?1, ?2, ?3, ?4)",
            params![
                revision as i64,
                key,
                value,
                create_revision.unwrap_or(revision) as i64
            ],
        )
        .map_err(backend("write key"))?;
    Ok(revision)
}

fn check(key: &str, object: &Object, expected: Option<Revision>) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != object.mod_revision => Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            actual: object.mod_revision,
        }),
        _ => Ok(()),
    }
}

impl Store for SqliteStore {
    fn create(&self, key: &str, value: &[u8]) -> Result<Object, StoreError> {
        self.with("create", |transaction| {
            if current(transaction, key)?.is_some() {
                return Err(StoreError::AlreadyExists {
                    key: key.to_string(),
                });
            }
            let revision = write(transaction, key, Some(value), None)?;
            Ok(Object {
                key: key.to_string(),
                value: value.to_vec(),
                create_revision: revision,
                mod_revision: revision,
            })
        })
    }

    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Revision>,
    ) -> Result<Object, StoreError> {
        self.with("update", |transaction| {
            let existing = current(transaction, key)?.ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
            check(key, &existing, expected)?;
            let revision = write(
                transaction,
                key,
                Some(value),
                Some(existing.create_revision),
            )?;
            Ok(Object {
                value: value.to_vec(),
                mod_revision: revision,
                ..existing
            })
        })
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Object, StoreError> {
        self.with("delete", |transaction| {
            let existing = current(transaction, key)?.ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })?;
            check(key, &existing, expected)?;
            write(transaction, key, None, Some(existing.create_revision))?;
            Ok(existing)
        })
    }

    fn get(&self, key: &str) -> Result<Object, StoreError> {
        self.with("get", |transaction| {
            current(transaction, key)?.ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
        })
    }

    fn list(&self, prefix: &str, at: Option<Revision>) -> Result<Listing, StoreError> {
        self.with("list", |transaction| {
            let now = meta(transaction, "revision")?;
            let compacted = meta(transaction, "compacted")?;
            let at = at.unwrap_or(now);
            if at > now {
                return Err(StoreError::FutureRevision {
                    requested: at,
                    current: now,
                });
            }
            if at < compacted {
                return Err(StoreError::Compacted {
                    requested: at,
                    compacted,
                });
            }
            let mut statement = transaction
                .prepare_cached(
                    "SELECT r.key, r.value, r.create_revision, r.revision FROM revisions r
                     JOIN (SELECT key, MAX(revision) AS revision FROM revisions
                           WHERE revision <= ?1 AND key >= ?2 AND key < ?3 GROUP BY key) latest
                     ON r.key = latest.key AND r.revision = latest.revision
                     WHERE r.value IS NOT NULL ORDER BY r.key",
                )
                .map_err(backend("list"))?;
            let rows = statement
                .query_map(params![at as i64, prefix, prefix_end(prefix)], |row| {
                    Ok(Object {
                        key: row.get(0)?,
                        value: row.get(1)?,
                        create_revision: row.get::<_, i64>(2)? as Revision,
                        mod_revision: row.get::<_, i64>(3)? as Revision,
                    })
                })
                .map_err(backend("list"))?;
            let items = rows
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend("list"))?;
            Ok(Listing {
                items,
                revision: at,
            })
        })
    }

    fn changes_since(&self, prefix: &str, after: Revision) -> Result<Vec<Event>, StoreError> {
        self.with("changes", |transaction| {
            let compacted = meta(transaction, "compacted")?;
            if after < compacted {
                return Err(StoreError::Compacted { requested: after, compacted });
            }
            let mut statement = transaction
                .prepare_cached(
                    "SELECT key, value, create_revision, revision FROM revisions
                     WHERE revision > ?1 AND key >= ?2 AND key < ?3 ORDER BY revision",
                )
                .map_err(backend("changes"))?;
            let rows = statement
                .query_map(params![after as i64, prefix, prefix_end(prefix)], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<Vec<u8>>>(1)?,
                        row.get::<_, i64>(2)? as Revision,
                        row.get::<_, i64>(3)? as Revision,
                    ))
                })
                .map_err(backend("changes"))?;
            let rows = rows.collect::<Result<Vec<_>, _>>().map_err(backend("changes"))?;
            let mut events = Vec::with_capacity(rows.len());
            for (key, value, create_revision, revision) in rows {
                let event = match value {
                    Some(value) => Event {
                        kind: EventKind::Put,
                        object: Object { key, value, create_revision, mod_revision: revision },
                    },
                    None => {
                        // A delete reports the value the key held just before it.
                        let previous: Vec<u8> = transaction
                            .query_row(
                                "SELECT value FROM revisions WHERE key = ?1 AND revision < ?2 AND value IS NOT NULL
                                 ORDER BY revision DESC LIMIT 1",
                                params![key, revision as i64],
                                |row| row.get(0),
                            )
                            .optional()
                            .map_err(backend("changes"))?
                            .unwrap_or_default();
                        Event {
                            kind: EventKind::Delete,
                            object: Object { key, value: previous, create_revision, mod_revision: revision },
                        }
                    }
                };
                events.push(event);
            }
            Ok(events)
        })
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.with("compact", |transaction| {
            let now = meta(transaction, "revision")?;
            if revision > now {
                return Err(StoreError::FutureRevision { requested: revision, current: now });
            }
            // Keep each key's newest row at or before the compaction point (unless it is a
            // delete) and everything after it.
            transaction
                .execute(
                    "DELETE FROM revisions WHERE revision < ?1 AND (value IS NULL OR revision < (
                         SELECT MAX(revision) FROM revisions later WHERE later.key = revisions.key AND later.revision <= ?1))",
                    [revision as i64],
                )
                .map_err(backend("compact"))?;
            transaction
                .execute("UPDATE meta SET value = MAX(value, ?1) WHERE name = 'compacted'", [revision as i64])
                .map_err(backend("compact"))?;
            Ok(())
        })
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        self.with("revision", |transaction| meta(transaction, "revision"))
    }
}
