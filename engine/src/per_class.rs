//! One value per I/O class. The forwarding paths keep a queue and a byte
//! budget per class (and the throughput class a share of the in-flight
//! bound of its own), so that a latency-class request never waits behind
//! throughput-class requests that a busy shard has not served yet
//! (`ARCHITECTURE.md`, I/O classes and the scheduler).

use shardblob_shards::IoClass;

/// A `T` for each I/O class.
#[derive(Clone)]
pub struct PerClass<T> {
    pub latency: T,
    pub throughput: T,
}

impl<T> PerClass<T> {
    /// One `make()` per class.
    pub fn new(mut make: impl FnMut() -> T) -> PerClass<T> {
        PerClass {
            latency: make(),
            throughput: make(),
        }
    }

    /// The value of `class`.
    pub fn get(&self, class: IoClass) -> &T {
        match class {
            IoClass::Latency => &self.latency,
            IoClass::Throughput => &self.throughput,
        }
    }

    /// Both values, latency first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        [&self.latency, &self.throughput].into_iter()
    }

    /// Both values through `f`, the two futures awaited together.
    pub async fn join_map<U, F: std::future::Future<Output = U>>(
        self,
        f: impl Fn(T) -> F,
    ) -> PerClass<U> {
        let both = futures_lite::future::zip(f(self.latency), f(self.throughput));
        let (latency, throughput) = both.await;
        PerClass {
            latency,
            throughput,
        }
    }

    /// Both values with their class, latency first.
    pub fn into_iter_classes(self) -> impl Iterator<Item = (IoClass, T)> {
        [
            (IoClass::Latency, self.latency),
            (IoClass::Throughput, self.throughput),
        ]
        .into_iter()
    }
}

impl<A, B> PerClass<(A, B)> {
    /// The pairs' halves, each per class (the two ends of channels).
    pub fn unzip(self) -> (PerClass<A>, PerClass<B>) {
        let (latency_a, latency_b) = self.latency;
        let (throughput_a, throughput_b) = self.throughput;
        (
            PerClass {
                latency: latency_a,
                throughput: throughput_a,
            },
            PerClass {
                latency: latency_b,
                throughput: throughput_b,
            },
        )
    }
}
