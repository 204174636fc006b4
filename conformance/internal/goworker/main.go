// Command goworker is the Go worker of the conformance contract: a procpool
// worker program that serves conf.echo, conf.fail, conf.sleep, conf.exit,
// conf.len and conf.pid and nothing else. Run the kit against it with
//
//	go build -o /tmp/goworker ./conformance/internal/goworker
//	go run ./cmd/procpool-conformance -- /tmp/goworker
//
// Run by hand, outside a pool, it says what it is and exits with status 2.
package main

import (
	"fmt"
	"os"

	"github.com/procpool/procpool"
	_ "github.com/procpool/procpool/conformance/conffuncs"
)

func main() {
	procpool.Main()
	fmt.Fprintln(os.Stderr, "goworker: a procpool worker for the conformance kit; run it with procpool-conformance")
	os.Exit(2)
}
