//! A tokio service that `select!`s over two buses and a timer: this program creates a `prices`
//! and an `orders` bus, starts a publisher thread for each, and handles whatever comes first
//! until both buses are closed.
//!
//! ```sh
//! cargo run --example tokio_select --features tokio
//! ```
//!
//! `recv_async` is cancel-safe: when the timer (or the other bus) wins a round of `select!`, the
//! losing receive is dropped without consuming anything, and the next round receives it.

use std::time::Duration;

use shmbus::{Bus, BusBuilder, Event, Start};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pid = std::process::id();
    let names = [
        format!("example-prices-{pid}"),
        format!("example-orders-{pid}"),
    ];
    let prices = BusBuilder::new(&names[0]).create()?;
    let orders = BusBuilder::new(&names[1]).create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(serve(&prices, &orders));
    for name in &names {
        Bus::remove(name)?;
    }
    result
}

/// Publishes `count` messages, one every `gap`, then lets go of the bus (which closes it).
fn publish(bus: &Bus, what: &'static str, count: u32, gap: Duration) -> shmbus::Result<()> {
    let mut tx = bus.publisher()?;
    std::thread::spawn(move || {
        for i in 0..count {
            std::thread::sleep(gap);
            tx.publish_bytes(format!("{what} {i}").as_bytes())
                .expect("fits the slot");
        }
    });
    Ok(())
}

async fn serve(prices: &Bus, orders: &Bus) -> Result<(), Box<dyn std::error::Error>> {
    let mut price_rx = prices.subscribe(Start::Next);
    let mut order_rx = orders.subscribe(Start::Next);
    publish(prices, "price", 8, Duration::from_millis(20))?;
    publish(orders, "order", 3, Duration::from_millis(70))?;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let (mut prices_open, mut orders_open) = (true, true);
    while prices_open || orders_open {
        tokio::select! {
            r = price_rx.recv_async(), if prices_open => match r? {
                Some(ev) => show("prices", ev),
                None => { println!("prices: closed"); prices_open = false; }
            },
            r = order_rx.recv_async(), if orders_open => match r? {
                Some(ev) => show("orders", ev),
                None => { println!("orders: closed"); orders_open = false; }
            },
            _ = tick.tick() => println!("tick"),
        }
    }
    Ok(())
}

fn show(bus: &str, ev: Event<Vec<u8>>) {
    match ev {
        Event::Message { seq, value } => {
            println!("{bus} #{seq}: {}", String::from_utf8_lossy(&value))
        }
        Event::Lapped { lost } => println!("{bus}: fell behind, {lost} lost"),
    }
}
