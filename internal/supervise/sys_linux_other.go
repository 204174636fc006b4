//go:build linux && !amd64 && !arm64

package supervise

// sysMemfdCreate is 0 where this package does not know memfd_create's number:
// SharedMemory then fails and the pool sends payloads through the pipe.
const sysMemfdCreate = 0
