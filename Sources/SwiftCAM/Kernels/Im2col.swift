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

/// Unfolds output rows `band` of one group of one image into a band of its column matrix: row
/// `(c, ki, kj)` holds, for every output position in the band, the input value under kernel tap
/// `(ki, kj)` of channel `c` (0 in the padding). Channels are the outer loop so that each input
/// plane stays in L1 while its taps are written, and the columns are written front to back.
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
    var row = columns
    for channel in 0..<channels {
        let plane = image + channel * height * width
        for ki in 0..<shape.kernelHeight {
            let rowOffset = ki * shape.dilationHeight - shape.paddingHeight
            let rows = validOutputRange(
                offset: rowOffset, stride: shape.strideHeight, inputSize: height, outputSize: outputHeight
            ).clamped(to: band)
            for kj in 0..<shape.kernelWidth {
                let columnOffset = kj * shape.dilationWidth - shape.paddingWidth
                let cols = validOutputRange(
                    offset: columnOffset, stride: strideWidth, inputSize: width, outputSize: outputWidth)
                fill(row, count: (rows.lowerBound - band.lowerBound) * outputWidth)
                for oy in rows {
                    let destination = row + (oy - band.lowerBound) * outputWidth
                    let source = plane + (oy * shape.strideHeight + rowOffset) * width
                    fill(destination, count: cols.lowerBound)
                    if strideWidth == 1 {
                        for ox in cols { destination[ox] = source[ox + columnOffset] }
                    } else {
                        for ox in cols { destination[ox] = source[ox * strideWidth + columnOffset] }
                    }
                    fill(destination + cols.upperBound, count: outputWidth - cols.upperBound)
                }
                fill(
                    row + (rows.upperBound - band.lowerBound) * outputWidth,
                    count: (band.upperBound - rows.upperBound) * outputWidth)
                row += rowStride
            }
        }
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
    var row = columns
    for channel in 0..<channels {
        let plane = image + channel * height * width
        for ki in 0..<shape.kernelHeight {
            let rowOffset = ki * shape.dilationHeight - shape.paddingHeight
            let rows = validOutputRange(
                offset: rowOffset, stride: shape.strideHeight, inputSize: height, outputSize: outputHeight
            ).clamped(to: band)
            for kj in 0..<shape.kernelWidth {
                let columnOffset = kj * shape.dilationWidth - shape.paddingWidth
                let cols = validOutputRange(
                    offset: columnOffset, stride: strideWidth, inputSize: width, outputSize: outputWidth)
                for oy in rows {
                    let source = row + (oy - band.lowerBound) * outputWidth
                    let destination = plane + (oy * shape.strideHeight + rowOffset) * width
                    if strideWidth == 1 {
                        for ox in cols { destination[ox + columnOffset] += source[ox] }
                    } else {
                        for ox in cols { destination[ox * strideWidth + columnOffset] += source[ox] }
                    }
                }
                row += rowStride
            }
        }
    }
}

/// Sets `count` floats to 0 with an inlined loop (the counts here are mostly tiny: padding edges).
@inline(__always)
func fill(_ destination: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { destination[i] = 0 }
}
