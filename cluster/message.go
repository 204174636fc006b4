package cluster

import "encoding/json"

// The headers of the pool's messages (docs/cluster.md). A task's data is
// its frame's body as the client's pool encoded it (internal/wire: the task
// header, then the argument in the pool's codec); an answer's data is the
// body of the answer frame the host's pool read from its worker, or an
// exitNotice.
const (
	hdrClient = "Procpool-Client" // task: the client's id; answers go to P.result.CLIENT
	hdrTask   = "Procpool-Task"   // task and answer: the task's id in the client's pool (decimal)
	hdrSend   = "Procpool-Send"   // task and answer: the client's number for this send of the task (decimal); Nats-Msg-Id is CLIENT.SEND
	hdrCodec  = "Procpool-Codec"  // task: the codec its argument is encoded with
	hdrKind   = "Procpool-Kind"   // answer: one of the kind* values
	hdrHost   = "Procpool-Host"   // answer: the host that answered
	hdrWorker = "Procpool-Worker" // answer: the host's worker that ran the task ("pid 1234")
)

// Kinds of answer.
const (
	kindResult   = "result"   // the function returned: a result frame's body
	kindError    = "error"    // it failed: an error frame's body (JSON)
	kindSkipped  = "skipped"  // it was stopped before it began
	kindExit     = "exit"     // the worker running it died: an exitNotice
	kindLost     = "lost"     // an earlier delivery's host stopped answering, or this host's pool was terminated under the task: an exitNotice
	kindReleased = "released" // this host's pool could not run it (closed or broken), and it did not run: the client sends it again
)

// exitNotice is the data of an exit or lost answer: how the worker (or the
// host) that ran the task ended, as the host's pool reported it.
type exitNotice struct {
	Reason   string `json:"reason"`
	Code     int    `json:"code"`
	Signal   int    `json:"signal,omitempty"`
	Stderr   string `json:"stderr,omitempty"`
	Message  string `json:"message,omitempty"` // the cause, where there is one
	Attempts int    `json:"attempts,omitempty"`
}

func (n exitNotice) encode() []byte {
	b, _ := json.Marshal(n) // an exitNotice always marshals
	return b
}
