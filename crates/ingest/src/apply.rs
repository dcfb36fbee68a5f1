//! The block application thread: one dedicated OS thread that folds and applies blocks (and
//! loads the genesis), so that block application never waits in tokio's blocking pool behind
//! `leaf/1` serve handlers, which the daemon runs there on the same runtime (review finding H3).
//!
//! The follower applies one block at a time, so the thread is fed through a channel of one slot
//! and each job answers over its own oneshot.

use std::thread;

use tokio::sync::{mpsc, oneshot};

use crate::error::IngestError;

/// Name of the block application thread (as `top -H` and panics show it).
pub const APPLY_THREAD_NAME: &str = "leafsync-apply";

/// Jobs queued for the thread: one. The follower awaits each job before it sends the next, so a
/// second slot would never fill.
const APPLY_QUEUE: usize = 1;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the block application thread; dropping it lets the thread finish its current
/// job and waits for it to end.
#[derive(Debug)]
pub struct ApplyThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ApplyThread {
    /// Starts the thread.
    pub fn spawn() -> Result<Self, IngestError> {
        let (jobs, mut queue) = mpsc::channel::<Job>(APPLY_QUEUE);
        let thread = thread::Builder::new()
            .name(APPLY_THREAD_NAME.to_owned())
            .spawn(move || {
                // A plain OS thread, outside any runtime: blocking here is what it is for.
                while let Some(job) = queue.blocking_recv() {
                    job();
                }
            })
            .map_err(IngestError::ApplySpawn)?;
        Ok(Self { jobs: Some(jobs), thread: Some(thread) })
    }

    /// Runs `job` on the thread and returns its result. The caller's task yields meanwhile; it
    /// waits only for jobs it sent itself.
    pub async fn run<T, F>(&self, job: F) -> Result<T, IngestError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, IngestError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(job());
        });
        let jobs = self.jobs.as_ref().ok_or(IngestError::ApplyThreadGone)?;
        jobs.send(job).await.map_err(|_| IngestError::ApplyThreadGone)?;
        // A job that panicked drops its sender, and the thread is then gone.
        answer.await.map_err(|_| IngestError::ApplyThreadGone)?
    }
}

impl Drop for ApplyThread {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop after its current job.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::warn!("the block application thread panicked");
        }
    }
}
