package serve

import (
	"strings"
	"testing"

	"github.com/procpool/procpool/internal/wire"
)

// An error report too large for the frame limit loses its bulky parts
// first — the stack, the encoded typed errors, the chain — and keeps its
// message and the names of its sentinels when those fit.
func TestErrorFrameShortensIdentityFirst(t *testing.T) {
	const limit = 4096
	eb := wire.ErrorBody{
		Message:   "quota exceeded",
		Type:      "*fmt.wrapError",
		Stack:     strings.Repeat("s", 2000),
		Panic:     true,
		Chain:     []string{"*fmt.wrapError", strings.Repeat("c", 1500)},
		Sentinels: []string{"io.EOF"},
		Values:    []wire.ErrorValue{{Type: "*x.T", Codec: "cbor", Data: make([]byte, 3000)}},
	}
	frame := errorFrame(1, eb, limit)
	if !wire.Fits(wire.LengthOf(frame, 0), limit) {
		t.Fatalf("frame of %d bytes over the limit %d", len(frame), limit)
	}
	got, err := wire.ParseError(frame[wire.HeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	if got.Message != eb.Message || got.Type != eb.Type || len(got.Sentinels) != 1 || got.Values != nil || got.Stack != "" {
		t.Errorf("shortened report: %+v; want the message, type and sentinels kept, the values and the stack dropped", got)
	}
	if len(got.Chain) != 2 {
		t.Errorf("the chain was dropped though it fitted once the values were gone: %+v", got)
	}
}
