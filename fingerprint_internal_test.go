package procpool

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/serve"
	"github.com/procpool/procpool/internal/wire"
)

type fpNode struct {
	Value int
	Kids  []*fpNode
	Next  *fpList
}

type fpList struct {
	Head *fpNode
	Tail fpListAlias
}

type fpListAlias = *fpList

type fpEmbedded struct{ ID string }

// fpDocNode is the recursive type of docs/protocol.md's example.
type fpDocNode struct {
	Value int
	Kids  []*fpDocNode
}

type fpCelsius float64

type fpArgs struct {
	Name    string `json:"name"`
	Scores  map[string][]float32
	When    time.Time
	Temp    fpCelsius
	private int
	fpEmbedded
	Any  any
	Grid [2][3]byte
}

type fpArgsRenamed struct {
	FullName string `json:"name"`
	Scores   map[string][]float32
	When     time.Time
	Temp     fpCelsius
	private  int
	fpEmbedded
	Any  any
	Grid [2][3]byte
}

type fpArgsSameShape struct {
	Name   string `json:"name"`
	Scores map[string][]float32
	When   time.Time
	Temp   float64
	other  []string
	fpEmbedded
	Any  interface{ M() }
	Grid [2][3]uint8
}

// The unexported fields that the description leaves out.
var _ = []any{fpArgs{}.private, fpArgsRenamed{}.private, fpArgsSameShape{}.other}

// The description follows the documented grammar: kinds, field names and
// tags, recursively; type names, unexported fields and methods do not
// count; a recursive type refers back to the named type on its path.
func TestFuncDescription(t *testing.T) {
	for _, c := range []struct {
		in, out reflect.Type
		want    string
	}{
		{reflect.TypeFor[int](), reflect.TypeFor[int](), "func(int) int"},
		{reflect.TypeFor[[]byte](), reflect.TypeFor[[32]byte](), "func([]uint8) [32]uint8"},
		{reflect.TypeFor[fpArgs](), reflect.TypeFor[*string](),
			`func(struct{Name string "json:\"name\""; Scores map[string][]float32; When struct{}; Temp float64; embed fpEmbedded struct{ID string}; Any interface; Grid [2][3]uint8}) *string`},
		{reflect.TypeFor[fpNode](), reflect.TypeFor[struct{}](),
			"func(struct{Value int; Kids []*@0; Next *struct{Head *@0; Tail *@1}}) struct{}"},
		{reflect.TypeFor[chan int](), reflect.TypeFor[func()](), "func(chan) func"},
		{reflect.TypeFor[fpDocNode](), reflect.TypeFor[int](), "func(struct{Value int; Kids []*@0}) int"},
	} {
		if got := funcDescription(c.in, c.out); got != c.want {
			t.Errorf("funcDescription(%v, %v) =\n%s\nwant\n%s", c.in, c.out, got, c.want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	str := reflect.TypeFor[string]()
	args := fingerprint(reflect.TypeFor[fpArgs](), str)
	if len(args) != 16 {
		t.Errorf("fingerprint %q: want 16 hex digits", args)
	}
	if got := fingerprint(reflect.TypeFor[fpArgsSameShape](), str); got != args {
		t.Errorf("types of the same shape: fingerprints %s and %s differ", got, args)
	}
	if got := fingerprint(reflect.TypeFor[fpArgsRenamed](), str); got == args {
		t.Errorf("a renamed field left the fingerprint %s unchanged", got)
	}
	if got := fingerprint(str, reflect.TypeFor[fpArgs]()); got == args {
		t.Errorf("argument and result swapped: same fingerprint %s", got)
	}
	// The examples in docs/protocol.md.
	for _, c := range []struct {
		t    reflect.Type
		want string
	}{{reflect.TypeFor[int](), "e24dca7e14835070"}, {str, "0e0a6fbece9ff8bd"}} {
		if got := fingerprint(c.t, c.t); got != c.want {
			t.Errorf("fingerprint of func(%v) %v: %s, want %s", c.t, c.t, got, c.want)
		}
	}
	if got := fingerprint(reflect.TypeFor[struct {
		Name  string `json:"name"`
		Times int
	}](), str); got != "88851aac5d4f4963" {
		t.Errorf("the documented example's fingerprint is %s", got)
	}
}

// The hello carries every function's fingerprint, unless the frame would
// then be over the frame limit: then it leaves them out, and the parent
// checks nothing, rather than the worker failing its start.
func TestHelloFingerprints(t *testing.T) {
	helloLimit := 0 // the default, wire.HelloLimit
	hello := func(max int) (wire.Hello, int) {
		t.Helper()
		var out bytes.Buffer
		s := serve.New(strings.NewReader(""), &out, serve.Config{Functions: served{}, Codec: codec.Default, MaxFrame: max, HelloLimit: helloLimit, Available: func() int { return 0 }})
		if err := s.Hello(1); err != nil {
			t.Fatalf("hello with a frame limit of %d: %v", max, err)
		}
		n := out.Len()
		r := wire.NewReader(&out, 64<<10, wire.DefaultMaxFrame)
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		h, err := wire.ParseHello(f.Body)
		if err != nil {
			t.Fatal(err)
		}
		return h, n
	}
	h, n := hello(wire.DefaultMaxFrame)
	if len(h.Fingerprints) != len(h.Functions) || len(h.Functions) == 0 {
		t.Fatalf("%d fingerprints for %d functions", len(h.Fingerprints), len(h.Functions))
	}
	for name, fp := range h.Fingerprints {
		if want := lookupBytes([]byte(name)).fingerprint(); fp != want || len(fp) != 16 {
			t.Errorf("%s: fingerprint %q, want %q", name, fp, want)
		}
	}
	if h, _ := hello(n - 4 - 1); len(h.Fingerprints) != len(h.Functions) {
		t.Errorf("a hello over a small frame limit but within wire.HelloLimit lost its fingerprints")
	}
	helloLimit = 9          // the least a length field can be: the frame limit decides
	h, _ = hello(n - 4 - 1) // the length field counts what follows it
	if h.Fingerprints != nil || len(h.Functions) == 0 {
		t.Errorf("a hello one byte over the limit: %d fingerprints, %d functions; want the functions only", len(h.Fingerprints), len(h.Functions))
	}
}
