package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

const frameHeader = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func appendFrame(dst, p []byte) []byte {
	var h [frameHeader]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(len(p)))
	binary.BigEndian.PutUint32(h[4:8], crc32.Checksum(p, castagnoli))
	return append(append(dst, h[:]...), p...)
}

// frameError is a frame that does not read back. The three kinds are
// handled differently (see the package doc): only a torn frame, or damage
// that sits at the very end of the newest segment, may be cut.
type frameError struct {
	// Off is where the frame starts, End where it claims to end (0 when
	// the header itself did not read).
	Off, End int64
	// Torn: the frame runs past the end of the data (a short header or
	// payload, or a length beyond the end of the file): what a write cut
	// short by a crash leaves.
	Torn bool
	// IO is the read error when the data could not be read at all (a disk
	// error): nothing is known about the frame.
	IO error
	// Reason describes damage (checksum, length) when neither of the above.
	Reason string
}

func (e *frameError) Error() string {
	switch {
	case e.IO != nil:
		return fmt.Sprintf("read error at offset %d: %v", e.Off, e.IO)
	case e.Torn:
		return fmt.Sprintf("torn frame at offset %d: %s", e.Off, e.Reason)
	}
	return fmt.Sprintf("damaged frame at offset %d: %s", e.Off, e.Reason)
}

func (e *frameError) Unwrap() error { return e.IO }

// frameReader reads frames from a segment.
type frameReader struct {
	br *bufio.Reader
	// off is the file offset of the end of the last good frame (0 unless
	// the caller starts it further in).
	off int64
	// size is the file offset where the data ends, -1 when unknown: it
	// tells a length that runs past the end (torn) from an absurd one
	// (damaged).
	size int64
	max  int
	hdr  [frameHeader]byte
}

func newFrameReader(r io.Reader, size int64, max int) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, 256<<10), size: size, max: max}
}

// next returns the next payload; io.EOF at a clean end (exactly after a
// frame), otherwise a *frameError. After an error the reader must not be
// used again.
func (fr *frameReader) next() ([]byte, error) {
	if _, err := io.ReadFull(fr.br, fr.hdr[:]); err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return nil, io.EOF
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, &frameError{Off: fr.off, Torn: true, Reason: "short header"}
		}
		return nil, &frameError{Off: fr.off, IO: err}
	}
	n := int64(binary.BigEndian.Uint32(fr.hdr[0:4]))
	sum := binary.BigEndian.Uint32(fr.hdr[4:8])
	end := fr.off + frameHeader + n
	switch {
	case fr.size >= 0 && end > fr.size:
		return nil, &frameError{Off: fr.off, End: end, Torn: true, Reason: fmt.Sprintf("length %d runs past the end (%d bytes)", n, fr.size)}
	case n == 0:
		// Records are never empty: a zero length is zero-filled space
		// (a file extended but not written before a crash) or damage.
		return nil, &frameError{Off: fr.off, End: fr.off + frameHeader, Reason: "zero length"}
	case n > int64(fr.max):
		return nil, &frameError{Off: fr.off, End: end, Reason: fmt.Sprintf("length %d above the record limit %d", n, fr.max)}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(fr.br, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &frameError{Off: fr.off, End: end, Torn: true, Reason: "short payload"}
		}
		return nil, &frameError{Off: fr.off, End: end, IO: err}
	}
	if crc32.Checksum(p, castagnoli) != sum {
		return nil, &frameError{Off: fr.off, End: end, Reason: "checksum mismatch"}
	}
	fr.off = end
	return p, nil
}
