//go:build !linux

package supervise

import (
	"errors"
	"fmt"
	"runtime"
)

// unsupported is the error of a mechanism that this operating system lacks:
// it wraps errors.ErrUnsupported and names the mechanism and the system.
func unsupported(what string) error {
	return fmt.Errorf("supervise: %s: not available on %s: %w", what, runtime.GOOS, errors.ErrUnsupported)
}
