// Package process is the backend of worker processes, both halves: the
// parent starts each worker (Launcher: exec of the program's own binary or
// WithCommand's, blocking pipes on descriptors 3 and 4, a shared-memory
// segment, a journal and a control pipe, a process group of its own, a
// parent-death signal from a thread that lives as long as the launcher),
// reads its standard error, sees it exit and makes the reading of its
// results end whoever holds them (Worker); the worker process, in
// procpool.Main, sets itself up from the same contract and serves tasks
// (Serve). contract.go holds the contract both halves keep: the
// environment, the descriptors and the exit statuses.
package process
