// Argument checking for the N-API entry points. Every kernel writes through raw pointers, so a
// wrong length from JS would corrupt memory: each argument's type and each buffer's length is
// checked first, and a JS TypeError/RangeError names the function, the argument and the fix.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

namespace agentrl {

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* fn, size_t count) : info_(info), fn_(fn) {
    if (info.Length() != count) {
      type_error("expected " + std::to_string(count) + " arguments, got " + std::to_string(info.Length()));
    }
  }

  // A non-negative integer that fits in 31 bits (BLAS and our index math use int/long).
  long size(size_t i, const char* name) const {
    const double v = number(i, name);
    if (!(v >= 0 && v <= 2147483647.0) || std::floor(v) != v) {
      range_error(std::string(name) + " must be an integer in [0, 2^31), got " + std::to_string(v));
    }
    return static_cast<long>(v);
  }

  double number(size_t i, const char* name) const {
    if (!info_[i].IsNumber()) type_error(std::string(name) + " must be a number");
    return info_[i].As<Napi::Number>().DoubleValue();
  }

  bool boolean(size_t i, const char* name) const {
    if (!info_[i].IsBoolean()) type_error(std::string(name) + " must be a boolean");
    return info_[i].As<Napi::Boolean>().Value();
  }

  // Pointer to the first element of the view (byteOffset included), after checking that at least
  // `need` elements are visible through it. Nullable arguments accept null/undefined → nullptr.
  float* f32(size_t i, const char* name, double need, bool nullable = false) const {
    return typed<float>(i, name, need, nullable, napi_float32_array, "Float32Array");
  }
  const int32_t* i32(size_t i, const char* name, double need) const {
    return typed<int32_t>(i, name, need, false, napi_int32_array, "Int32Array");
  }
  const uint8_t* u8(size_t i, const char* name, double need, bool nullable) const {
    return typed<uint8_t>(i, name, need, nullable, napi_uint8_array, "Uint8Array");
  }

  [[noreturn]] void type_error(const std::string& msg) const {
    throw Napi::TypeError::New(info_.Env(), std::string(fn_) + ": " + msg);
  }
  [[noreturn]] void range_error(const std::string& msg) const {
    throw Napi::RangeError::New(info_.Env(), std::string(fn_) + ": " + msg);
  }

 private:
  template <class T>
  T* typed(size_t i, const char* name, double need, bool nullable, napi_typedarray_type type,
           const char* typeName) const {
    const Napi::Value v = info_[i];
    if (nullable && (v.IsNull() || v.IsUndefined())) return nullptr;
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
      type_error(std::string(name) + " must be a " + typeName + (nullable ? " or null" : ""));
    }
    Napi::TypedArrayOf<T> arr = v.As<Napi::TypedArrayOf<T>>();
    if (static_cast<double>(arr.ElementLength()) < need) {
      range_error(std::string(name) + " has " + std::to_string(arr.ElementLength()) + " elements but the shape needs " +
                  std::to_string(static_cast<long long>(need)) + " (check the shape arguments and the buffer size)");
    }
    return arr.Data();
  }

  const Napi::CallbackInfo& info_;
  const char* fn_;
};

}  // namespace agentrl
