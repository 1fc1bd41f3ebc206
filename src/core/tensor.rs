//! Dense tensors as the server moves them: a TF `DataType`, a shape, and bytes or strings.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

use super::error::{ServingError, ServingResult};

/// TensorFlow's `DataType`, with TF's enum numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Invalid = 0,
    Float = 1,
    Double = 2,
    Int32 = 3,
    UInt8 = 4,
    Int16 = 5,
    Int8 = 6,
    String = 7,
    Complex64 = 8,
    Int64 = 9,
    Bool = 10,
    BFloat16 = 14,
    UInt16 = 17,
    Complex128 = 18,
    Half = 19,
    UInt32 = 22,
    UInt64 = 23,
}

impl DType {
    /// Maps TF's `DataType` number to a dtype the server handles.
    pub fn from_number(value: i32) -> Option<DType> {
        Some(match value {
            1 => DType::Float,
            2 => DType::Double,
            3 => DType::Int32,
            4 => DType::UInt8,
            5 => DType::Int16,
            6 => DType::Int8,
            7 => DType::String,
            8 => DType::Complex64,
            9 => DType::Int64,
            10 => DType::Bool,
            14 => DType::BFloat16,
            17 => DType::UInt16,
            18 => DType::Complex128,
            19 => DType::Half,
            22 => DType::UInt32,
            23 => DType::UInt64,
            _ => return None,
        })
    }

    /// Returns TF's `DataTypeString`, as used in error messages (`float`, `int32`, ...).
    pub fn tf_name(self) -> &'static str {
        match self {
            DType::Invalid => "INVALID",
            DType::Float => "float",
            DType::Double => "double",
            DType::Int32 => "int32",
            DType::UInt8 => "uint8",
            DType::Int16 => "int16",
            DType::Int8 => "int8",
            DType::String => "string",
            DType::Complex64 => "complex64",
            DType::Int64 => "int64",
            DType::Bool => "bool",
            DType::BFloat16 => "bfloat16",
            DType::UInt16 => "uint16",
            DType::Complex128 => "complex128",
            DType::Half => "half",
            DType::UInt32 => "uint32",
            DType::UInt64 => "uint64",
        }
    }

    /// Returns the proto enum name (`DT_FLOAT`), as status and metadata JSON print it.
    pub fn enum_name(self) -> &'static str {
        match self {
            DType::Invalid => "DT_INVALID",
            DType::Float => "DT_FLOAT",
            DType::Double => "DT_DOUBLE",
            DType::Int32 => "DT_INT32",
            DType::UInt8 => "DT_UINT8",
            DType::Int16 => "DT_INT16",
            DType::Int8 => "DT_INT8",
            DType::String => "DT_STRING",
            DType::Complex64 => "DT_COMPLEX64",
            DType::Int64 => "DT_INT64",
            DType::Bool => "DT_BOOL",
            DType::BFloat16 => "DT_BFLOAT16",
            DType::UInt16 => "DT_UINT16",
            DType::Complex128 => "DT_COMPLEX128",
            DType::Half => "DT_HALF",
            DType::UInt32 => "DT_UINT32",
            DType::UInt64 => "DT_UINT64",
        }
    }

    /// Returns the size of one element in bytes, or `None` for strings.
    pub fn element_size(self) -> Option<usize> {
        match self {
            DType::Invalid | DType::String => None,
            DType::UInt8 | DType::Int8 | DType::Bool => Some(1),
            DType::Int16 | DType::UInt16 | DType::Half | DType::BFloat16 => Some(2),
            DType::Float | DType::Int32 | DType::UInt32 => Some(4),
            DType::Double | DType::Int64 | DType::UInt64 | DType::Complex64 => Some(8),
            DType::Complex128 => Some(16),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tf_name())
    }
}

/// A Rust type that stores one element of a dense tensor.
pub trait Element: bytemuck::Pod + Send + Sync + 'static {
    const DTYPE: DType;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {
        $(impl Element for $t { const DTYPE: DType = DType::$d; })*
    };
}

element!(
    f32 => Float, f64 => Double, i32 => Int32, u8 => UInt8, i16 => Int16, i8 => Int8,
    i64 => Int64, u16 => UInt16, u32 => UInt32, u64 => UInt64,
    half::f16 => Half, half::bf16 => BFloat16,
);

/// The element storage of a tensor.
#[derive(Clone, PartialEq)]
pub enum TensorData {
    /// Little-endian, row-major element bytes (bool is one byte per element, 0 or 1).
    Dense(Bytes),
    /// One byte string per element (DT_STRING).
    Strings(Vec<Bytes>),
}

/// A dense tensor.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = match &self.data {
            TensorData::Dense(bytes) => bytes.len(),
            TensorData::Strings(strings) => strings.len(),
        };
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("data_len", &len)
            .finish()
    }
}

/// Keeps a typed `Vec` alive behind `Bytes`, so the buffer stays aligned for its element type.
struct TypedOwner<T: Element>(Vec<T>);

impl<T: Element> AsRef<[u8]> for TypedOwner<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// The most dimensions a tensor may have: TF's `TensorShape` limit.
pub const MAX_DIMS: usize = 254;

/// Refuses a shape with more dimensions than TF allows, as TF does.
pub fn check_rank(rank: usize) -> ServingResult<()> {
    if rank > MAX_DIMS {
        return Err(ServingError::invalid_argument(format!(
            "Too many dimensions in tensor: {rank} (at most {MAX_DIMS})"
        )));
    }
    Ok(())
}

/// Returns the number of elements of `shape`, or an error naming the overflow.
pub fn checked_num_elements(shape: &[usize]) -> ServingResult<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| ServingError::invalid_argument(format!("tensor shape {shape:?} has too many elements")))
}

impl Tensor {
    /// Builds a dense tensor from a typed vector without copying it.
    pub fn from_vec<T: Element>(shape: Vec<usize>, values: Vec<T>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        Tensor { dtype: T::DTYPE, shape, data: TensorData::Dense(Bytes::from_owner(TypedOwner(values))) }
    }

    /// The bytes the tensor holds (a string costs its bytes and a handle).
    pub fn held_bytes(&self) -> usize {
        match &self.data {
            TensorData::Dense(bytes) => bytes.len(),
            TensorData::Strings(strings) => {
                strings.iter().fold(0usize, |acc, s| acc.saturating_add(s.len() + std::mem::size_of::<Bytes>()))
            }
        }
    }

    /// Builds a bool tensor (one byte per element).
    pub fn from_bools(shape: Vec<usize>, values: Vec<bool>) -> Self {
        let bytes: Vec<u8> = values.into_iter().map(u8::from).collect();
        Tensor { dtype: DType::Bool, shape, data: TensorData::Dense(Bytes::from(bytes)) }
    }

    /// Builds a string tensor.
    pub fn from_strings(shape: Vec<usize>, values: Vec<Bytes>) -> Self {
        Tensor { dtype: DType::String, shape, data: TensorData::Strings(values) }
    }

    /// Builds a dense tensor from raw little-endian bytes, checking the size.
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, bytes: Bytes) -> ServingResult<Self> {
        let size = dtype
            .element_size()
            .ok_or_else(|| ServingError::invalid_argument(format!("type {dtype} has no fixed element size")))?;
        let expected = checked_num_elements(&shape)?
            .checked_mul(size)
            .ok_or_else(|| ServingError::invalid_argument("tensor byte size overflows"))?;
        if bytes.len() != expected {
            return Err(ServingError::invalid_argument(format!(
                "tensor of type {dtype} and shape {shape:?} needs {expected} bytes, got {}",
                bytes.len()
            )));
        }
        Ok(Tensor { dtype, shape, data: TensorData::Dense(bytes) })
    }

    /// Returns the number of elements.
    pub fn num_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Returns the dense bytes, or `None` for a string tensor.
    pub fn dense_bytes(&self) -> Option<&Bytes> {
        match &self.data {
            TensorData::Dense(bytes) => Some(bytes),
            TensorData::Strings(_) => None,
        }
    }

    /// Returns the strings, or `None` for a dense tensor.
    pub fn strings(&self) -> Option<&[Bytes]> {
        match &self.data {
            TensorData::Strings(strings) => Some(strings),
            TensorData::Dense(_) => None,
        }
    }

    /// Returns the elements as `T`: borrowed when the bytes are aligned, copied otherwise.
    /// Returns `None` when `T` does not match the dtype.
    pub fn values<T: Element>(&self) -> Option<Cow<'_, [T]>> {
        if T::DTYPE != self.dtype {
            return None;
        }
        let bytes = self.dense_bytes()?;
        match bytemuck::try_cast_slice::<u8, T>(bytes) {
            Ok(slice) => Some(Cow::Borrowed(slice)),
            Err(_) => Some(Cow::Owned(bytemuck::pod_collect_to_vec(bytes))),
        }
    }

    /// Returns bool elements (a nonzero byte is true).
    pub fn bool_values(&self) -> Option<Vec<bool>> {
        if self.dtype != DType::Bool {
            return None;
        }
        Some(self.dense_bytes()?.iter().map(|&b| b != 0).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_round_trips_without_copy() {
        let tensor = Tensor::from_vec(vec![2, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
        assert_eq!(tensor.dtype, DType::Float);
        let values = tensor.values::<f32>().expect("float values");
        assert!(matches!(values, Cow::Borrowed(_)));
        assert_eq!(&*values, &[1.0, 2.0, 3.0, 4.0]);
        assert!(tensor.values::<i32>().is_none());
    }

    #[test]
    fn from_bytes_checks_size_and_overflow() {
        let ok = Tensor::from_bytes(DType::Int32, vec![2], Bytes::from(vec![0u8; 8]));
        assert!(ok.is_ok());
        let short = Tensor::from_bytes(DType::Int32, vec![3], Bytes::from(vec![0u8; 8]));
        assert!(short.is_err());
        let huge = Tensor::from_bytes(DType::Float, vec![1 << 62, 1 << 62], Bytes::new());
        assert!(huge.is_err());
    }

    #[test]
    fn unaligned_bytes_are_copied() {
        let raw = Bytes::from(vec![0u8, 0, 0, 128, 63]);
        let tensor = Tensor::from_bytes(DType::Float, vec![1], raw.slice(1..)).expect("valid");
        assert_eq!(&*tensor.values::<f32>().expect("float"), &[1.0]);
    }
}
