package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

// uploadConn is a connection to AEM that sends large request bodies in
// large steps. http.Transport hands a request body with a Content-Length
// to the connection's ReadFrom (as an *io.LimitedReader, once the headers
// are out), and net.TCPConn's own ReadFrom copies in 32 KiB steps when the
// source is neither a socket nor a file: a read and a write system call per
// 32 KiB. A body of largeBodySize or more is copied through a
// largeCopyBufferSize buffer instead, as large responses are (writer.go);
// smaller ones, and bodies of unknown length, keep the connection's own
// ReadFrom. Over TLS the transport writes through the tls.Conn and this
// does not apply.
type uploadConn struct{ net.Conn }

var uploadBuffers = sync.Pool{New: func() any { return new([largeCopyBufferSize]byte) }}

func (c uploadConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok && lr.N >= largeBodySize {
		buf := uploadBuffers.Get().(*[largeCopyBufferSize]byte)
		defer uploadBuffers.Put(buf)
		return io.CopyBuffer(writerOnly{c.Conn}, r, buf[:])
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// CloseWrite half-closes the connection as the underlying one does:
// ReverseProxy half-closes the upstream side of an upgraded (101)
// connection, such as a WebSocket, when the client's side ends.
func (c uploadConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// writerOnly hides a writer's ReadFrom, so that io.CopyBuffer uses the
// buffer it is given.
type writerOnly struct{ io.Writer }

// dialUploads wraps dial so that its connections are uploadConns.
func dialUploads(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return uploadConn{c}, nil
	}
}
