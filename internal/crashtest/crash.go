//go:build cgo

// Package crashtest crashes the calling process in C code, for the tests
// of how a pool reports a worker that a fatal signal ended inside the Go
// runtime. It needs cgo; without it, Available is false.
package crashtest

/*
static void crashtest_segfault(void) {
	volatile int *p = 0;
	*p = 1;
}
*/
import "C"

// Available reports whether Segfault can crash in C code: the package was
// built with cgo.
const Available = true

// Segfault writes through a NULL pointer in C code. The process gets a
// SIGSEGV that the Go runtime did not cause in Go code: it prints
// "SIGSEGV: segmentation violation ... signal arrived during cgo execution"
// and a traceback on its standard error, and exits with status 2.
func Segfault() { C.crashtest_segfault() }
