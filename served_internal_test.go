package procpool

import (
	"testing"

	"github.com/procpool/procpool/internal/serve"
)

// The codes the serve loop sets are the ones the package exports.
func TestServeCodes(t *testing.T) {
	for _, c := range [][2]string{
		{serve.CodeUnknownFunc, CodeUnknownFunc},
		{serve.CodeEncode, CodeEncode},
		{serve.CodeInit, CodeInit},
		{serve.CodeDeadline, CodeDeadline},
	} {
		if c[0] != c[1] {
			t.Errorf("serve sets code %q, procpool exports %q", c[0], c[1])
		}
	}
}
