package codec

import (
	"encoding/json"

	"github.com/procpool/procpool/codec/internal/guard"
)

type jsonCodec struct{}

func (jsonCodec) Name() string { return jsonName }

func (jsonCodec) Append(dst []byte, v any) (out []byte, err error) {
	n := len(dst)
	defer func() {
		if r := recover(); r != nil {
			out, err = dst[:n], guard.EncodeError(jsonName, v, guard.PanicError(r))
		}
	}()
	b, err := json.Marshal(v)
	if err != nil {
		return dst, guard.EncodeError(jsonName, v, err)
	}
	if n == 0 && cap(dst) < len(b) {
		return b, nil // dst would have to grow anyway: skip the copy.
	}
	return append(dst, b...), nil
}

func (jsonCodec) Unmarshal(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = guard.DecodeError(jsonName, v, guard.PanicError(r))
		}
	}()
	if err := json.Unmarshal(data, v); err != nil {
		return guard.DecodeError(jsonName, v, err)
	}
	return nil
}
