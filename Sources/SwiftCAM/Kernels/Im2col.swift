// Im2col: unfolding an image's receptive fields into the rows of a column matrix (im2col) and
// folding such a matrix back by summation (col2im, its adjoint), a band of output rows at a time.
// Valid ranges are computed once per kernel row / column, so no element tests its bounds.

/// The outputs `o` in `0..<outputSize` whose input index `o * stride + offset` lies in `0..<inputSize`.
/// Computed once per kernel row / column so that im2col and col2im never test bounds per element.
@inline(__always)
func validOutputRange(offset: Int, stride: Int, inputSize: Int, outputSize: Int) -> Range<Int> {
    // o * stride + offset >= 0  <=>  o >= ceil(-offset / stride)
    let first = offset >= 0 ? 0 : (stride - 1 - offset) / stride
    // o * stride + offset <= inputSize - 1  <=>  o <= floor((inputSize - 1 - offset) / stride)
    let lastInput = inputSize - 1 - offset
    let end = lastInput < 0 ? 0 : lastInput / stride + 1
    let lower = min(first, outputSize)
    return lower..<max(lower, min(end, outputSize))
}

/// One kernel tap `(c, ki, kj)` of a band: the column-matrix row it fills and the output
/// positions whose input under that tap lies inside the image (the rest read padding).
struct KernelTap {
    /// Row of the column matrix: `(c * kh + ki) * kw + kj`.
    let index: Int
    /// Offset of channel `c`'s plane in the image.
    let planeOffset: Int
    /// The input row of output row `oy` is `oy * strideHeight + rowOffset`.
    let rowOffset: Int
    /// The input column of output column `ox` is `ox * strideWidth + columnOffset`.
    let columnOffset: Int
    /// Output rows of the band, and output columns, whose input lies inside the image.
    let rows: Range<Int>, columns: Range<Int>
}

/// Calls `body` for every tap of `channels` channels, channel by channel (so that each input
/// plane stays in L1 while its taps are visited), in column-matrix row order. The valid ranges
/// are computed once per kernel row / column.
@inline(__always)
func forEachKernelTap(
    channels: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
    band: Range<Int>, shape: Conv2dShape, _ body: (KernelTap) -> Void
) {
    var index = 0
    for channel in 0..<channels {
        for ki in 0..<shape.kernelHeight {
            let rowOffset = ki * shape.dilationHeight - shape.paddingHeight
            let rows = validOutputRange(
                offset: rowOffset, stride: shape.strideHeight, inputSize: height, outputSize: outputHeight
            ).clamped(to: band)
            for kj in 0..<shape.kernelWidth {
                let columnOffset = kj * shape.dilationWidth - shape.paddingWidth
                let columns = validOutputRange(
                    offset: columnOffset, stride: shape.strideWidth, inputSize: width, outputSize: outputWidth)
                body(KernelTap(index: index, planeOffset: channel * height * width, rowOffset: rowOffset,
                               columnOffset: columnOffset, rows: rows, columns: columns))
                index += 1
            }
        }
    }
}

/// Unfolds output rows `band` of one group of one image into a band of its column matrix: row
/// `(c, ki, kj)` holds, for every output position in the band, the input value under kernel tap
/// `(ki, kj)` of channel `c` (0 in the padding). The columns are written front to back.
/// Rows are `rowStride` floats apart (default: packed), so that several images' bands can sit
/// side by side in one matrix.
func im2col(
    columns: UnsafeMutablePointer<Float>,  // (C * kh * kw, band.count * Wo), rows rowStride apart
    image: UnsafePointer<Float>,  // (C, H, W)
    channels: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
    band: Range<Int>, shape: Conv2dShape, rowStride: Int? = nil
) {
    let rowStride = rowStride ?? band.count * outputWidth
    let strideWidth = shape.strideWidth
    forEachKernelTap(channels: channels, height: height, width: width, outputHeight: outputHeight,
                     outputWidth: outputWidth, band: band, shape: shape) { tap in
        let row = columns + tap.index * rowStride
        let cols = tap.columns
        fill(row, count: (tap.rows.lowerBound - band.lowerBound) * outputWidth)
        for oy in tap.rows {
            let destination = row + (oy - band.lowerBound) * outputWidth
            let source = image + tap.planeOffset + (oy * shape.strideHeight + tap.rowOffset) * width
            fill(destination, count: cols.lowerBound)
            if strideWidth == 1 {
                for ox in cols { destination[ox] = source[ox + tap.columnOffset] }
            } else {
                for ox in cols { destination[ox] = source[ox * strideWidth + tap.columnOffset] }
            }
            fill(destination + cols.upperBound, count: outputWidth - cols.upperBound)
        }
        fill(row + (tap.rows.upperBound - band.lowerBound) * outputWidth,
             count: (band.upperBound - tap.rows.upperBound) * outputWidth)
    }
}

/// Folds a band of a column matrix (output rows `band`) back onto one group of one image, adding
/// every entry to the input position it was unfolded from (the adjoint of `im2col`). Accumulates:
/// zero `image` first.
func col2im(
    image: UnsafeMutablePointer<Float>,  // (C, H, W)
    columns: UnsafePointer<Float>,  // (C * kh * kw, band.count * Wo), rows rowStride apart
    channels: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
    band: Range<Int>, shape: Conv2dShape, rowStride: Int? = nil
) {
    let rowStride = rowStride ?? band.count * outputWidth
    let strideWidth = shape.strideWidth
    forEachKernelTap(channels: channels, height: height, width: width, outputHeight: outputHeight,
                     outputWidth: outputWidth, band: band, shape: shape) { tap in
        let row = columns + tap.index * rowStride
        for oy in tap.rows {
            let source = row + (oy - band.lowerBound) * outputWidth
            let destination = image + tap.planeOffset + (oy * shape.strideHeight + tap.rowOffset) * width
            if strideWidth == 1 {
                for ox in tap.columns { destination[ox + tap.columnOffset] += source[ox] }
            } else {
                for ox in tap.columns { destination[ox * strideWidth + tap.columnOffset] += source[ox] }
            }
        }
    }
}

/// Sets `count` floats to 0 with an inlined loop (the counts here are mostly tiny: padding edges).
@inline(__always)
func fill(_ destination: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { destination[i] = 0 }
}
