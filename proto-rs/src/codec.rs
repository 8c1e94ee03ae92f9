//! The codec the generated clients and servers use: tonic-prost's, with a smaller initial
//! buffer. tonic gives every call an encode buffer of `buffer_size` up front and keeps it for
//! the call's life, so a server holding 10,000 follow streams held 10,000 × 8 KiB (tonic's
//! default) of mostly empty buffers. The buffer still grows to fit a large message.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Bytes a call's encode and decode buffers start with.
pub const BUFFER_SIZE: usize = 1024;
/// Bytes encoded before a stream yields to the runtime (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// Bytes a context window's encode buffer starts with: a window is typically tens of
/// kilobytes, and growing a 1 KiB buffer to fit one copied it six times over.
pub const WINDOW_BUFFER_SIZE: usize = 64 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

/// Bytes a server stream's encode buffer starts with: a follow stream or an inbox watch may
/// wait for hours before it sends anything, and 10,000 of them held 10,000 KiB-sized buffers
/// (the buffer grows on the first message; tonic also grows compression buffers in steps of
/// this size, so it cannot be 0).
pub const STREAM_BUFFER_SIZE: usize = 128;

/// The encode buffer for messages of type `T`: [`WINDOW_BUFFER_SIZE`] for the server's
/// context windows (one buffer per call, freed when the response is sent),
/// [`STREAM_BUFFER_SIZE`] for the items of the server's streams, [`BUFFER_SIZE`] for
/// everything else.
fn encode_settings<T: 'static>() -> BufferSettings {
    use std::any::TypeId;
    let t = TypeId::of::<T>();
    if t == TypeId::of::<crate::encoded::ContextWindowResponse>() {
        BufferSettings::new(WINDOW_BUFFER_SIZE, YIELD_THRESHOLD)
    } else if t == TypeId::of::<crate::encoded::WireEntry>()
        || t == TypeId::of::<crate::v1::Entry>()
        || t == TypeId::of::<crate::v1::HandoffEvent>()
    {
        BufferSettings::new(STREAM_BUFFER_SIZE, YIELD_THRESHOLD)
    } else {
        settings()
    }
}

/// `application/grpc+proto` via prost, with [`BUFFER_SIZE`] buffers.
#[derive(Debug, Clone)]
pub struct ProstCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        ProstCodec(PhantomData)
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(encode_settings::<T>())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
