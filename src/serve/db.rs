//! Read-only connections for the handlers. SQLite calls block, so each request's queries run
//! on tokio's blocking pool, on a connection taken from a small idle list (opening one costs
//! a file open and a schema read; reusing it costs nothing). Each request reads inside one
//! transaction, so a page and its `total` come from the same snapshot while wrappers write.
//!
//! A single shared connection would serialise every request; one per request would pay the
//! open each time. Connections are opened read-only (`store::OpenMode::ReadOnly`): the server
//! can never change the database, whatever a request asks.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::error::ApiError;
use crate::store::{self, OpenMode, StoreError};

/// Idle connections kept for reuse; more may be open while requests run.
const MAX_IDLE: usize = 8;

pub struct Db {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Db {
    /// Opens the first connection, so a missing, foreign or too-old database is refused
    /// before the server listens.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        let conn = store::open(path, OpenMode::ReadOnly)?;
        Ok(Db {
            path: path.to_path_buf(),
            idle: Mutex::new(vec![conn]),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read-only connection inside one read transaction, off the async threads.
    pub async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let db = Arc::clone(self);
        tokio::task::spawn_blocking(move || db.read_blocking(f))
            .await
            .map_err(|e| ApiError::internal(format!("query task failed: {e}")))?
    }

    /// [`Db::read`] for a caller already on a blocking thread.
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let conn = self.take()?;
        let result = conn
            .unchecked_transaction()
            .map_err(|e| ApiError::from(crate::store::query::QueryError::from(e)))
            .and_then(|tx| f(&tx));
        self.give(conn);
        result
    }

    /// Runs `f` on a pooled connection outside any transaction, for long readers (a replay,
    /// an export) that must not pin one snapshot, and so the WAL, for their whole length.
    pub fn with_connection<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let conn = self.take()?;
        let result = f(&conn);
        self.give(conn);
        result
    }

    fn take(&self) -> Result<Connection, ApiError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(c) => Ok(c),
            None => Ok(store::open(&self.path, OpenMode::ReadOnly)?),
        }
    }

    fn give(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}
