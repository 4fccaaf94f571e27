//! Segments of each kind in the shape most tests want, created under a [`TestBus`] name in one
//! call (the name removes the segment when dropped). Tests that check the builders themselves
//! call them directly.

use shmbus::{Board, BoardBuilder, Bus, BusBuilder, Payload, Queue};

use crate::TestBus;

/// A single-producer bus of `slots` slots of `capacity` bytes.
pub fn bus(name: &TestBus, slots: u64, capacity: usize) -> Bus {
    BusBuilder::new(name.name())
        .slots(slots)
        .capacity(capacity)
        .create()
        .expect("create bus")
}

/// A queue of `capacity` raw items of up to `item_size` bytes.
pub fn queue(name: &TestBus, capacity: u64, item_size: usize) -> Queue {
    Queue::builder(name.name())
        .capacity(capacity)
        .item_size(item_size)
        .create()
        .expect("create queue")
}

/// A queue of `capacity` items of type `T`.
pub fn typed_queue<T: Payload>(name: &TestBus, capacity: u64) -> Queue<T> {
    Queue::builder(name.name())
        .item_type::<T>()
        .capacity(capacity)
        .create()
        .expect("create typed queue")
}

/// A board of `cells` cells of up to `value_size` bytes.
pub fn board(name: &TestBus, cells: usize, value_size: usize) -> Board {
    BoardBuilder::new(name.name())
        .cells(cells)
        .value_size(value_size)
        .create()
        .expect("create board")
}

/// An in-process bus (on the heap, no name in /dev/shm) of `slots` slots of `capacity` bytes.
pub fn in_process_bus(slots: u64, capacity: usize) -> Bus {
    BusBuilder::new("in-process")
        .slots(slots)
        .capacity(capacity)
        .in_process()
        .expect("in-process bus")
}

/// An in-process board of `cells` cells of up to `value_size` bytes.
pub fn in_process_board(cells: usize, value_size: usize) -> Board {
    BoardBuilder::new("in-process")
        .cells(cells)
        .value_size(value_size)
        .in_process()
        .expect("in-process board")
}
