//! Outputs beside the database: what the writer hands every message to (the OTLP exporter,
//! [`crate::otel`]), behind a two-method trait as asciinema's session does with its outputs.
//!
//! The writer is on the path of every event, so [`Output::send`] must return at once: an
//! output that talks to the network copies what it needs into a bounded queue of its own and
//! counts what does not fit. An output never fails the session; it reports its own trouble
//! once, at [`Output::finish`].

use crate::store::writer::Msg;

pub trait Output: Send {
    /// Sees every message the writer receives, in order, before the writer stores it.
    fn send(&mut self, msg: &Msg);
    /// The session is over: deliver what is pending, within the output's own deadline.
    fn finish(self: Box<Self>);
}

/// The outputs of one session.
#[derive(Default)]
pub struct Outputs(Vec<Box<dyn Output>>);

impl Outputs {
    pub fn new(list: Vec<Box<dyn Output>>) -> Outputs {
        Outputs(list)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn send(&mut self, msg: &Msg) {
        for o in &mut self.0 {
            o.send(msg);
        }
    }

    pub fn finish(&mut self) {
        for o in self.0.drain(..) {
            o.finish();
        }
    }
}
