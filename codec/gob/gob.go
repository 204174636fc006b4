package codec

import (
	"bytes"
	"encoding/gob"
	"errors"
)

type gobCodec struct{}

func (gobCodec) Name() string { return gobName }

func (gobCodec) Append(dst []byte, v any) (out []byte, err error) {
	n := len(dst)
	defer func() {
		if r := recover(); r != nil {
			out, err = dst[:n], encodeError(gobName, v, panicError(r))
		}
	}()
	if err := checkCycles(v); err != nil {
		return dst, encodeError(gobName, v, err)
	}
	// A fresh encoder per message: the message carries the type
	// description of v and can be decoded on its own.
	buf := bytes.NewBuffer(dst)
	if err := gob.NewEncoder(buf).Encode(v); err != nil {
		return dst[:n], encodeError(gobName, v, err)
	}
	return buf.Bytes(), nil
}

var (
	errTrailing       = errors.New("trailing data after the encoded value")
	errNilDestination = errors.New("destination is nil")
)

func (gobCodec) Unmarshal(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = decodeError(gobName, v, panicError(r))
		}
	}()
	if v == nil {
		// gob would decode and discard the value.
		return decodeError(gobName, v, errNilDestination)
	}
	// bytes.Reader is an io.ByteReader, so the decoder reads from it
	// directly and r.Len() is exactly what it did not consume.
	r := bytes.NewReader(data)
	if err := gob.NewDecoder(r).Decode(v); err != nil {
		return decodeError(gobName, v, err)
	}
	if r.Len() != 0 {
		return decodeError(gobName, v, errTrailing)
	}
	return nil
}
