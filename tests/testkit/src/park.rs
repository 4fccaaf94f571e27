//! A thread stopped at a point of its own choosing until the test lets it go: a participant
//! "stopped" inside an update or a publish (holding its cell or slot) without signals, so that a
//! test can look at what others see meanwhile.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// The parked thread's side: where it calls [`Gate::stop_here`], it stops.
pub struct Gate {
    inside: Sender<()>,
    go: Receiver<()>,
}

impl Gate {
    /// Tells the test the thread got here, then waits until [`Parked::release`].
    pub fn stop_here(&self) {
        self.inside
            .send(())
            .expect("the test waits for the thread to stop");
        self.go.recv().expect("the test lets the thread go");
    }
}

/// A thread stopped at its [`Gate::stop_here`].
pub struct Parked<T> {
    go: Sender<()>,
    thread: JoinHandle<T>,
}

/// Runs `f` on a new thread and returns once it has reached [`Gate::stop_here`] (panics if `f`
/// ends without reaching it, rather than waiting forever).
pub fn park<T: Send + 'static>(f: impl FnOnce(&Gate) -> T + Send + 'static) -> Parked<T> {
    let (inside_tx, inside_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        f(&Gate {
            inside: inside_tx,
            go: go_rx,
        })
    });
    inside_rx
        .recv()
        .expect("the parked thread ended before it reached stop_here");
    Parked { go: go_tx, thread }
}

impl<T> Parked<T> {
    /// Lets the thread go on and returns what it returned.
    pub fn release(self) -> T {
        self.go.send(()).expect("the parked thread waits");
        self.thread.join().expect("the parked thread panicked")
    }
}
