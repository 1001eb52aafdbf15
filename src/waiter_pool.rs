//! The threads that sleep for asynchronous waits.
//!
//! A waiter blocks in the kernel for as long as its wait lasts, so each pending wait needs its
//! own thread; but threads are kept once started: a finished waiter parks for a while and takes
//! the next wait, so a program that waits often pays for a thread spawn only when more waits are
//! pending at once than ever before. Idle threads exit after [`IDLE_LIFETIME`]. All decisions
//! (hand a job to an idle thread, or start one; exit when idle) are taken under one mutex, so no
//! job is ever left in the queue with nobody to run it.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Stack of a waiter thread: it only runs a wait loop and a few syscalls.
const STACK_SIZE: usize = 128 * 1024;
/// How long a finished waiter stays parked for the next wait before exiting.
const IDLE_LIFETIME: Duration = Duration::from_secs(5);

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
}

#[derive(Default)]
struct Pool {
    queue: Mutex<Queue>,
    work_arrived: Condvar,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

/// Runs `job` on a waiter thread: a parked one if any, otherwise a new one.
pub fn run(job: Job) -> std::io::Result<()> {
    let pool = pool();
    let mut queue = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
    if queue.idle > queue.jobs.len() {
        queue.jobs.push_back(job);
        pool.work_arrived.notify_one();
        return Ok(());
    }
    drop(queue);
    std::thread::Builder::new()
        .name("shmkit-waiter".into())
        .stack_size(STACK_SIZE)
        .spawn(move || {
            job();
            park_and_serve(pool);
        })
        .map(|_| ())
}

/// After its first job, a waiter serves queued jobs until it has been idle for IDLE_LIFETIME.
fn park_and_serve(pool: &'static Pool) {
    let mut queue = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            drop(queue);
            job();
            queue = pool.queue.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        queue.idle += 1;
        let (guard, timeout) = pool
            .work_arrived
            .wait_timeout(queue, IDLE_LIFETIME)
            .unwrap_or_else(|e| e.into_inner());
        queue = guard;
        queue.idle -= 1;
        if timeout.timed_out() && queue.jobs.is_empty() {
            return; // decided under the lock: `run` will not count on this thread any more
        }
    }
}
