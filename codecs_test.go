//go:build unix

package procpool_test

import (
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/codec/gob"
	"github.com/procpool/procpool/codec/msgpack"
)

// relabelled is CBOR under another name: a codec of the program's own.
type relabelled struct{ name string }

func (c relabelled) Name() string                           { return c.name }
func (relabelled) Append(dst []byte, v any) ([]byte, error) { return codec.CBOR.Append(dst, v) }
func (relabelled) Unmarshal(data []byte, v any) error       { return codec.CBOR.Unmarshal(data, v) }

// ownCodec is registered at package level, as a program registers its own
// codec, so that the workers (this test binary, re-executed) know it too.
var ownCodec = registerCodec(relabelled{"test-own"})

func registerCodec(c codec.Codec) codec.Codec {
	codec.Register(c)
	return c
}

// Every registered codec carries tasks to real workers and back: the
// built-in ones, those of the codec packages (registered by their import),
// and the program's own; Map's chunks too (gob's and ownCodec are not
// ListCodecs).
func TestRegisteredCodecs(t *testing.T) {
	ctx := testCtx(t)
	for _, c := range []codec.Codec{codec.CBOR, codec.JSON, msgpack.Codec, gob.Codec, ownCodec} {
		t.Run(c.Name(), func(t *testing.T) {
			p := newPool(t, procpool.WithProcesses(1), procpool.WithCodec(c))
			if v, err := procpool.Apply(ctx, p, square, 7); err != nil || v != 49 {
				t.Fatalf("Apply: %d, %v", v, err)
			}
			got, err := procpool.Map(ctx, p, square, []int{1, 2, 3, 4, 5}, procpool.ChunkSize(3))
			if err != nil || len(got) != 5 || got[4] != 25 {
				t.Fatalf("Map: %v, %v", got, err)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

var parentOnlyCodec = sync.OnceValue(func() codec.Codec { return registerCodec(relabelled{"test-parent-only"}) })

// A worker whose program does not know the pool's codec (here: one the
// test registers in the parent only, as a WithCommand binary lacks a codec
// package the parent imports) fails its start, and New says which codec.
func TestWorkerLacksCodec(t *testing.T) {
	noOrphans(t)
	p, err := procpool.New(procpool.WithProcesses(1), procpool.WithCodec(parentOnlyCodec()))
	if err == nil {
		p.Terminate()
		t.Fatal("New succeeded with a codec the workers do not know")
	}
	var se *procpool.StartError
	if !errors.As(err, &se) || !errors.Is(err, procpool.ErrHandshake) || !strings.Contains(err.Error(), `does not know codec "test-parent-only"`) {
		t.Fatalf("New: %v; want a *StartError naming the codec", err)
	}
	t.Log(err)
}

// Only the default codec's library is linked into a program that imports
// procpool: MessagePack and gob come with their packages.
func TestDefaultLinkHasNoOptionalCodecs(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		if strings.Contains(dep, "msgpack") || strings.HasSuffix(dep, "/gob") || dep == "encoding/gob" {
			t.Errorf("procpool depends on %s", dep)
		}
	}
}
