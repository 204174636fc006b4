package codec

import (
	"bytes"
	"errors"
	"reflect"
	"sync"

	"github.com/fxamacker/cbor/v2"
	"github.com/procpool/procpool/codec/internal/guard"
)

type cborCodec struct{}

var (
	cborEnc cbor.UserBufferEncMode
	// cborDec decodes maps inside any as map[string]any.
	cborDec cbor.DecMode
	// cborDecAnyKeys is the fallback for data holding a map with a key
	// that is not a string: maps inside any become map[any]any.
	cborDecAnyKeys cbor.DecMode
)

func init() {
	var err error
	cborEnc, err = cbor.EncOptions{
		Sort:          cbor.SortNone,
		ShortestFloat: cbor.ShortestFloatNone,
		NaNConvert:    cbor.NaNConvertNone,
		InfConvert:    cbor.InfConvertNone,
		BigIntConvert: cbor.BigIntConvertNone,
		Time:          cbor.TimeRFC3339Nano,
		TimeTag:       cbor.EncTagRequired,
		IndefLength:   cbor.IndefLengthAllowed,
		NilContainers: cbor.NilContainerAsNull,
		String:        cbor.StringToTextString,
		ByteArray:     cbor.ByteArrayToByteSlice,
	}.UserBufferEncMode()
	if err != nil {
		panic("codec: cbor encoding options: " + err.Error())
	}
	opts := cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyQuiet,
		TimeTag:          cbor.DecTagIgnored,
		MaxNestedLevels:  guard.MaxNestedLevels,
		MaxArrayElements: guard.MaxElements,
		MaxMapPairs:      guard.MaxElements,
		IndefLength:      cbor.IndefLengthAllowed,
		TagsMd:           cbor.TagsAllowed,
		IntDec:           cbor.IntDecConvertSignedOrBigInt,
		BigIntDec:        cbor.BigIntDecodePointer,
		DefaultMapType:   reflect.TypeFor[map[string]any](),
		UTF8:             cbor.UTF8DecodeInvalid,
		TimeTagToAny:     cbor.TimeTagToTime,
	}
	cborDec, err = opts.DecMode()
	if err != nil {
		panic("codec: cbor decoding options: " + err.Error())
	}
	opts.DefaultMapType = nil // map[any]any
	cborDecAnyKeys, err = opts.DecMode()
	if err != nil {
		panic("codec: cbor decoding options: " + err.Error())
	}
}

func (cborCodec) Name() string { return cborName }

func (cborCodec) Append(dst []byte, v any) (out []byte, err error) {
	if out, ok := appendCBORFast(dst, v); ok {
		return out, nil
	}
	n := len(dst)
	defer func() {
		if r := recover(); r != nil {
			out, err = dst[:n], guard.EncodeError(cborName, v, guard.PanicError(r))
		}
	}()
	if err := guard.CheckCycles(v); err != nil {
		return dst, guard.EncodeError(cborName, v, err)
	}
	// The buffer writes after len(dst), into dst's spare capacity while it
	// lasts. Buffers are pooled only to save allocating the Buffer itself.
	buf := bufferPool.Get().(*bytes.Buffer)
	*buf = *bytes.NewBuffer(dst)
	err = cborEnc.MarshalToBuffer(v, buf)
	out = buf.Bytes()
	*buf = bytes.Buffer{} // do not keep the caller's memory
	bufferPool.Put(buf)
	if err != nil {
		return dst[:n], guard.EncodeError(cborName, v, err)
	}
	return out, nil
}

var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (cborCodec) Unmarshal(data []byte, v any) (err error) {
	if unmarshalCBORFast(data, v) {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = guard.DecodeError(cborName, v, guard.PanicError(r))
		}
	}()
	err = cborDec.Unmarshal(data, v)
	if err == nil && len(data) == 1 && (data[0] == 0xf6 || data[0] == 0xf7) {
		// For null and undefined the library sets pointers, slices and
		// maps to nil and leaves everything else, interfaces included,
		// unchanged. At the top level, give every destination its zero
		// value instead.
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
			rv.Elem().SetZero()
		}
	}
	if err != nil && isCBORTypeError(err) {
		// Possibly a map with non-string keys decoded into any: decode
		// again with map[any]any. If that fails too, report the first
		// error, which is about the caller's types.
		if cborDecAnyKeys.Unmarshal(data, v) == nil {
			return nil
		}
	}
	if err != nil {
		return guard.DecodeError(cborName, v, err)
	}
	return nil
}

// isCBORTypeError reports whether err is a *cbor.UnmarshalTypeError. It is a
// separate function so that the target of errors.As, which escapes, is
// allocated only on this error path.
func isCBORTypeError(err error) bool {
	var te *cbor.UnmarshalTypeError
	return errors.As(err, &te)
}
