// Package gob is a procpool codec that encodes values with encoding/gob
// from the standard library.
//
// Importing the package registers [Codec] with package codec under the
// name "gob", so that a worker finds it by that name: select it with
// procpool.WithCodec(gob.Codec) in a program whose workers run the same
// binary (or, with procpool.WithCommand, a binary that imports this package
// too). Programs that do not import it do not link encoding/gob.
//
// Nothing in procpool's benchmarks argues for gob (docs/benchmarks.md): it
// is Go-only, slower than codec.CBOR on every workload measured, and not
// safe against forged input (see [Codec]). It is kept for programs that
// already rely on gob's encoding of their types (GobEncoder methods).
//
// # Safety
//
// Append and Unmarshal never panic: a panic inside encoding/gob becomes an
// error. Before encoding, a value whose type can hold a reference cycle is
// checked, and a cyclic value is an error rather than a stack overflow.
// Gob bounds message sizes and slice lengths by the input, but the Go
// standard library as of Go 1.26.8 preallocates maps from the declared
// count (golang.org/issue/79539, fix pending upstream): a forged message
// decoded into a destination containing a map can make it allocate
// gigabytes from a few dozen bytes. Use gob only between trusted
// processes.
package gob

import (
	"bytes"
	"encoding/gob"
	"errors"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/codec/internal/guard"
)

const gobName = "gob"

// Codec encodes values with encoding/gob. Its name is "gob".
//
// Gob is a stream format: an encoder sends each type's description once
// and later values refer to it. Here every message must be decodable on
// its own, so each Append uses a fresh encoder and every message
// carries the full type description of v. That is the honest
// per-message cost of gob in this setting: small values are several
// times larger than in the other codecs and encoding allocates a new
// encoder each time.
//
// Gob is Go-only and has its own rules: the destination must be a
// concrete type (decoding into *any fails unless the value was encoded
// as an interface with a registered type); zero values inside structs
// (0, "", nil, pointers to zero values) are not transmitted and decode
// as nil or zero; an empty slice decodes as nil and a nil map at the
// top level as an empty map; a nil pointer at the top level, a struct
// with no exported fields, a channel and a function cannot be encoded.
// Struct fields of channel or function type are silently skipped.
//
// Codec is not a codec.ListCodec: a worker cannot record a chunk's
// results item by item in its journal, so when a worker dies in the
// middle of a Map or Imap chunk, the chunk's finished items cannot be
// recovered and the whole chunk fails (or is retried).
//
// Gob decoding is not safe against forged input: see the package
// documentation.
var Codec codec.Codec = gobCodec{}

func init() { codec.Register(Codec) }

type gobCodec struct{}

func (gobCodec) Name() string { return gobName }

func (gobCodec) Append(dst []byte, v any) (out []byte, err error) {
	n := len(dst)
	defer func() {
		if r := recover(); r != nil {
			out, err = dst[:n], guard.EncodeError(gobName, v, guard.PanicError(r))
		}
	}()
	if err := guard.CheckCycles(v); err != nil {
		return dst, guard.EncodeError(gobName, v, err)
	}
	// A fresh encoder per message: the message carries the type
	// description of v and can be decoded on its own.
	buf := bytes.NewBuffer(dst)
	if err := gob.NewEncoder(buf).Encode(v); err != nil {
		return dst[:n], guard.EncodeError(gobName, v, err)
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
			err = guard.DecodeError(gobName, v, guard.PanicError(r))
		}
	}()
	if v == nil {
		// gob would decode and discard the value.
		return guard.DecodeError(gobName, v, errNilDestination)
	}
	// bytes.Reader is an io.ByteReader, so the decoder reads from it
	// directly and r.Len() is exactly what it did not consume.
	r := bytes.NewReader(data)
	if err := gob.NewDecoder(r).Decode(v); err != nil {
		return guard.DecodeError(gobName, v, err)
	}
	if r.Len() != 0 {
		return guard.DecodeError(gobName, v, errTrailing)
	}
	return nil
}
