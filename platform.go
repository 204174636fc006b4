package procpool

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/procpool/procpool/internal/supervise"
)

// checkPlatform returns the error New gives for a configuration that this
// operating system cannot run, or nil: worker processes where none can be
// started (Windows), a memory limit where no process's resident memory can
// be read (macOS). In-process pools run everywhere. See docs/design.md,
// "Platforms".
func (c *config) checkPlatform() error {
	if c.inProcess {
		return nil
	}
	if !supervise.Processes {
		return fmt.Errorf("procpool: worker processes are not supported on %s; use WithInProcess: %w", runtime.GOOS, errors.ErrUnsupported)
	}
	if c.maxMemory > 0 && !supervise.HasRSS {
		return &OptionError{
			Option: fmt.Sprintf("WithMaxWorkerMemory(%d)", c.maxMemory),
			Reason: "the pool cannot read a worker's resident memory on " + runtime.GOOS + " (it reads Linux's /proc): leave the option out",
			Err:    errors.ErrUnsupported,
		}
	}
	return nil
}
