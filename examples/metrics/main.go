// Command metrics serves a pool's statistics as Prometheus metrics on
// /metrics (package procprom), while a background load runs tasks on it:
// most succeed, some fail, and now and then one crashes its worker.
//
//	go run ./examples/metrics                # serve on 127.0.0.1:2112 until Ctrl-C
//	go run ./examples/metrics -once          # run a little load, print the metrics once, exit
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/procprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Work squares x; it fails for multiples of 7 and crashes its worker for
// multiples of 101, as a flaky dependency might.
var Work = procpool.Register("work", func(_ context.Context, x int) (int, error) {
	switch {
	case x%101 == 100:
		os.Exit(3)
	case x%7 == 6:
		return 0, errors.New("no luck")
	}
	return x * x, nil
})

func main() {
	procpool.Main() // in a pool's worker process: serve tasks, then exit
	addr := flag.String("addr", "127.0.0.1:2112", "where to serve /metrics")
	once := flag.Bool("once", false, "run 1000 tasks, print the procpool metrics once and exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	p, err := procpool.New(procpool.WithProcesses(2))
	if err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
	defer p.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(procprom.NewCollector(p, procprom.WithPoolName("example")))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/metrics"

	if *once {
		_, _ = procpool.Map(ctx, p, Work, seq(1000), procpool.ChunkSize(1))
		if err := printMetrics(url); err != nil {
			fmt.Fprintln(os.Stderr, "metrics:", err)
			os.Exit(1)
		}
		return
	}
	fmt.Printf("serving %s (Ctrl-C to stop)\n", url)
	for i := 0; ctx.Err() == nil; i++ {
		_, _ = procpool.Apply(ctx, p, Work, i)
		time.Sleep(10 * time.Millisecond)
	}
}

func seq(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

// printMetrics scrapes url as Prometheus would and prints procpool's lines.
func printMetrics(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "procpool_") {
			fmt.Println(sc.Text())
		}
	}
	return sc.Err()
}
