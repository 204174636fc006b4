package procpool

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/wire"
)

// selfWrapping is an error whose Unwrap returns itself.
type selfWrapping struct{}

func (selfWrapping) Error() string   { return "self" }
func (e selfWrapping) Unwrap() error { return e }

// panickyIs is an error whose Is method panics.
type panickyIs struct{}

func (panickyIs) Error() string { return "panicky" }
func (panickyIs) Is(error) bool { panic("Is") }
func (panickyIs) Unwrap() error { return io.EOF }

// A chain that never ends is named up to maxChain types; an Is method that
// panics costs the error its identity, not the worker.
func TestChainOfMisbehavingErrors(t *testing.T) {
	if c := chainOf(selfWrapping{}); len(c) != maxChain || c[0] != "procpool.selfWrapping" {
		t.Errorf("chain of a self-wrapping error: %d entries %q", len(c), c)
	}
	if s, v := identify(selfWrapping{}, codec.Default); s != nil || v != nil {
		t.Errorf("identity of a self-wrapping error: %q %v", s, v)
	}
	if s, _ := identify(panickyIs{}, codec.Default); len(s) != 0 {
		t.Errorf("identity of an error whose Is panics: %q", s)
	}
	if c := chainOf(panickyIs{}); len(c) != 2 {
		t.Errorf("chain of panickyIs: %q", c)
	}
}

// What the worker sends for a nil pointer of a registered type, or for a
// value the codec cannot encode, is left out rather than sent broken.
func TestIdentifySkipsWhatCannotTravel(t *testing.T) {
	var nilPtr *unencodableError
	if _, v := identify(nilPtr, codec.Default); v != nil {
		t.Errorf("a nil pointer was encoded: %v", v)
	}
	if _, v := identify(&unencodableError{F: func() {}}, codec.Default); v != nil {
		t.Errorf("an unencodable value was sent: %v", v)
	}
	if _, v := identify(errors.Join(&unencodableError{}, nil), codec.Default); len(v) != 1 || v[0].Type != "*github.com/procpool/procpool.unencodableError" {
		t.Errorf("an encodable value: %v", v)
	}
	if errs := rebuild(&wire.ErrorBody{Values: []wire.ErrorValue{{Type: "*github.com/procpool/procpool.unencodableError", Codec: "nope", Data: []byte{0xa0}}}}); errs != nil {
		t.Errorf("a value of an unknown codec was rebuilt: %v", errs)
	}
}

// unencodableError encodes unless F holds something the codec cannot
// encode.
type unencodableError struct{ F any }

func (*unencodableError) Error() string { return "unencodable" }

func init() { RegisterErrorType[*unencodableError]() }

// Two sentinels cannot share a name.
func TestSentinelNameTaken(t *testing.T) {
	defer func() {
		if v := recover(); v == nil || !strings.Contains(v.(string), "already registered") {
			t.Errorf("a second sentinel named io.EOF: panic %v", v)
		}
	}()
	addSentinel("io.EOF", errors.New("another"))
}
