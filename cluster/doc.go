// Package cluster runs a procpool pool's tasks on worker hosts on other
// machines, through a NATS server with JetStream: the same Apply,
// ApplyAsync, Map, Imap and Future, the same typed errors, the same
// promises under faults.
//
// A client is a *procpool.Pool made by New. A host is the user's own
// program: it makes a local pool (its functions registered in Go, or
// served by WithCommand workers in another language) and calls Serve,
// which pulls tasks from the stream, one per free slot, runs them and
// sends each answer to the client that sent the task. Hosts may join and
// leave at any time; one that drains (its context ends, as on SIGTERM)
// finishes what it has first.
//
// Under faults:
//   - A task's worker that dies on its host fails the task with a
//     *procpool.WorkerExitError naming the host and worker, or runs it
//     again (WithRetries), as locally.
//   - A host that dies or stalls for longer than Config.AckWait: the broker
//     delivers its tasks again, and the host that gets one reports the
//     loss instead of running it; the task is retried (WithRetries) or
//     fails with a *procpool.WorkerExitError whose Reason is
//     ReasonHostLost and which matches ErrHostLost. No other task fails.
//   - An answer that comes twice reaches the caller once: a client takes
//     the first answer to each task and drops the rest.
//   - A broker restart: tasks are kept on disk (Config.Memory false), and
//     clients and hosts reconnect (give nats.Connect
//     nats.MaxReconnects(-1)).
//   - Cancellation, deadlines and Terminate reach the host running the
//     task, which cancels the task's context, as a local pool does.
//
// docs/cluster.md has the subjects, the stream, what is acknowledged when,
// the limits and their defaults, and how to run hosts. Package
// cluster/broker starts an embedded NATS server for users without one.
package cluster
