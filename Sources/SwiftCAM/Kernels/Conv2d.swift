// Conv2d: 2-D convolution for NCHW Float32 tensors, forward (with optional bias and fused ReLU)
// and gradient with respect to the input, by im2col / col2im and OpenBLAS sgemm. The column matrix
// is built a band of output rows at a time so that it stays in L2 between im2col and the GEMM.
// Every step is split across threads (see Parallel.swift): im2col / col2im and the bias pass by
// channel ranges, the GEMMs by rows or columns.
// Batch norm is folded into the weights by the caller, so it does not appear here.

import COpenBLAS

/// The hyper-parameters of a 2-D convolution, as in `torch.nn.Conv2d` (zero padding, no bias).
public struct Conv2dShape: Equatable, Sendable {
    public var inChannels, outChannels: Int
    public var kernelHeight, kernelWidth: Int
    public var strideHeight, strideWidth: Int
    public var paddingHeight, paddingWidth: Int
    public var dilationHeight, dilationWidth: Int
    public var groups: Int

    /// Creates a shape; stride 1, padding 0, dilation 1 and one group by default.
    public init(
        inChannels: Int, outChannels: Int, kernelHeight: Int, kernelWidth: Int,
        strideHeight: Int = 1, strideWidth: Int = 1, paddingHeight: Int = 0, paddingWidth: Int = 0,
        dilationHeight: Int = 1, dilationWidth: Int = 1, groups: Int = 1
    ) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.paddingHeight = paddingHeight
        self.paddingWidth = paddingWidth
        self.dilationHeight = dilationHeight
        self.dilationWidth = dilationWidth
        self.groups = groups
    }

    /// Creates a shape with a square kernel and the same stride, padding and dilation on both axes.
    public init(
        inChannels: Int, outChannels: Int, kernelSize: Int,
        stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1
    ) {
        self.init(
            inChannels: inChannels, outChannels: outChannels,
            kernelHeight: kernelSize, kernelWidth: kernelSize,
            strideHeight: stride, strideWidth: stride, paddingHeight: padding, paddingWidth: padding,
            dilationHeight: dilation, dilationWidth: dilation, groups: groups)
    }

    /// Whether the sizes are positive (padding non-negative) and the channels divide into the groups.
    /// The kernels assume a valid shape: check this before calling them with user-supplied sizes.
    public var isValid: Bool {
        inChannels > 0 && outChannels > 0 && kernelHeight > 0 && kernelWidth > 0
            && strideHeight > 0 && strideWidth > 0 && paddingHeight >= 0 && paddingWidth >= 0
            && dilationHeight > 0 && dilationWidth > 0 && groups > 0
            && inChannels % groups == 0 && outChannels % groups == 0
    }

    /// The number of weights, `outChannels * inChannels / groups * kernelHeight * kernelWidth`.
    public var weightCount: Int {
        outChannels * (inChannels / groups) * kernelHeight * kernelWidth
    }

    /// Whether the convolution is a 1x1, stride-1, unpadded one: a plain matrix product on the input.
    var isPointwise: Bool {
        kernelHeight == 1 && kernelWidth == 1 && strideHeight == 1 && strideWidth == 1
            && paddingHeight == 0 && paddingWidth == 0
    }

    /// Output spatial size, nil when the input is too small (output would be < 1).
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int)? {
        let spanHeight = height + 2 * paddingHeight - dilationHeight * (kernelHeight - 1) - 1
        let spanWidth = width + 2 * paddingWidth - dilationWidth * (kernelWidth - 1) - 1
        guard spanHeight >= 0, spanWidth >= 0 else { return nil }
        return (spanHeight / strideHeight + 1, spanWidth / strideWidth + 1)
    }

    /// Floats of workspace `conv2dForward` / `conv2dBackwardInput` need for one image, whatever the
    /// batch size (0 for 1x1 stride-1 unpadded convs): one band of one group's column matrix,
    /// `(inChannels / groups * kernelHeight * kernelWidth, bandRows * outputWidth)`.
    public func workspaceCount(height: Int, width: Int) -> Int {
        guard !isPointwise, let output = outputSize(height: height, width: width) else { return 0 }
        return columnRows * bandRows(outputHeight: output.height, outputWidth: output.width) * output.width
    }

    /// Rows of the column matrix: `inChannels / groups * kernelHeight * kernelWidth`.
    var columnRows: Int { (inChannels / groups) * kernelHeight * kernelWidth }

    /// Floats of column matrix unfolded and multiplied at a time: small enough to stay in L2 between
    /// im2col and the GEMM...
    static let columnBandBudget = 1 << 18

    /// ...but at least this many output positions per band, because every GEMM call packs the whole
    /// weight matrix again, which costs as much as a GEMM with this many columns.
    static let minimumBandColumns = 256

    /// Output rows per band of the column matrix (at least 1, at most all).
    func bandRows(outputHeight: Int, outputWidth: Int) -> Int {
        let budgetRows = Self.columnBandBudget / max(1, columnRows * outputWidth)
        let minimumRows = (Self.minimumBandColumns + outputWidth - 1) / max(1, outputWidth)
        return max(1, min(outputHeight, max(budgetRows, minimumRows)))
    }
}

/// Computes `output = conv(input, weight) + bias + residual`, then `max(output, 0)` when
/// `applyReLU` is set (a ResNet block's last convolution, shortcut addition and ReLU in one pass).
///
/// Zero padding, cross-correlation as in PyTorch. `bias` and `residual` may be nil. The shape must
/// be valid and the input large enough (`shape.outputSize` non-nil); `workspace` holds at least
/// `shape.workspaceCount(height:width:)` floats. `output` must not overlap the other buffers.
public func conv2dForward(
    output: UnsafeMutablePointer<Float>,  // (N, Cout, Ho, Wo)
    input: UnsafePointer<Float>,  // (N, Cin, H, W)
    weight: UnsafePointer<Float>,  // (Cout, Cin / groups, kh, kw)
    bias: UnsafePointer<Float>?,  // (Cout)
    residual: UnsafePointer<Float>? = nil,  // (N, Cout, Ho, Wo)
    batch: Int, height: Int, width: Int, shape: Conv2dShape,
    applyReLU: Bool,
    workspace: UnsafeMutablePointer<Float>  // (Cin / groups * kh * kw, bandRows * Wo)
) {
    guard let (outputHeight, outputWidth) = shape.outputSize(height: height, width: width) else { return }
    let groupInChannels = shape.inChannels / shape.groups
    let groupOutChannels = shape.outChannels / shape.groups
    let inputPlane = height * width
    let outputPlane = outputHeight * outputWidth
    let columnRows = shape.columnRows
    let bandRows = shape.bandRows(outputHeight: outputHeight, outputWidth: outputWidth)

    for image in 0..<batch {
        let imageInput = input + image * shape.inChannels * inputPlane  // (Cin, H, W)
        let imageOutput = output + image * shape.outChannels * outputPlane  // (Cout, Ho, Wo)
        for group in 0..<shape.groups {
            let groupInput = imageInput + group * groupInChannels * inputPlane  // (Cin/g, H, W)
            let groupWeight = weight + group * groupOutChannels * columnRows  // (Cout/g, Cin/g*kh*kw)
            let groupOutput = imageOutput + group * groupOutChannels * outputPlane  // (Cout/g, Ho*Wo)
            if shape.isPointwise {
                // (Cout/g, H*W) = (Cout/g, Cin/g) · (Cin/g, H*W)
                parallelSgemm(
                    transposeA: false, m: groupOutChannels, n: outputPlane, k: columnRows,
                    a: groupWeight, lda: columnRows, b: groupInput, ldb: outputPlane,
                    beta: 0, c: groupOutput, ldc: outputPlane)
                continue
            }
            for bandStart in stride(from: 0, to: outputHeight, by: bandRows) {
                let band = bandStart..<min(bandStart + bandRows, outputHeight)
                let bandColumns = band.count * outputWidth
                forEachRange(of: groupInChannels, costPerItem: columnRows / groupInChannels * bandColumns) { channels in
                    im2col(
                        columns: workspace + channels.lowerBound * (columnRows / groupInChannels) * bandColumns,
                        image: groupInput + channels.lowerBound * inputPlane, channels: channels.count,
                        height: height, width: width, outputHeight: outputHeight, outputWidth: outputWidth,
                        band: band, shape: shape)
                }
                // (Cout/g, band) = (Cout/g, Cin/g*kh*kw) · (Cin/g*kh*kw, band), into columns of the output
                parallelSgemm(
                    transposeA: false, m: groupOutChannels, n: bandColumns, k: columnRows,
                    a: groupWeight, lda: columnRows, b: workspace, ldb: bandColumns,
                    beta: 0, c: groupOutput + bandStart * outputWidth, ldc: outputPlane)
            }
        }
        let imageResidual = residual.map { $0 + image * shape.outChannels * outputPlane }  // (Cout, Ho, Wo)
        forEachRange(of: shape.outChannels, costPerItem: outputPlane) { channels in
            convolutionEpilogue(
                imageOutput, channels: channels, spatial: outputPlane, bias: bias, residual: imageResidual,
                applyReLU: applyReLU)
        }
    }
}

/// Computes the gradient of a convolution with respect to its input (no weight gradients).
///
/// `inputGradient` is overwritten, not accumulated into. Same preconditions as `conv2dForward`;
/// `inputGradient` must not overlap `outputGradient` or `workspace`.
public func conv2dBackwardInput(
    inputGradient: UnsafeMutablePointer<Float>,  // (N, Cin, H, W)
    outputGradient: UnsafePointer<Float>,  // (N, Cout, Ho, Wo)
    weight: UnsafePointer<Float>,  // (Cout, Cin / groups, kh, kw)
    batch: Int, height: Int, width: Int, shape: Conv2dShape,
    workspace: UnsafeMutablePointer<Float>  // (Cin / groups * kh * kw, bandRows * Wo)
) {
    guard let (outputHeight, outputWidth) = shape.outputSize(height: height, width: width) else { return }
    let groupInChannels = shape.inChannels / shape.groups
    let groupOutChannels = shape.outChannels / shape.groups
    let inputPlane = height * width
    let outputPlane = outputHeight * outputWidth
    let columnRows = shape.columnRows
    let bandRows = shape.bandRows(outputHeight: outputHeight, outputWidth: outputWidth)

    for image in 0..<batch {
        let imageGradient = inputGradient + image * shape.inChannels * inputPlane  // (Cin, H, W)
        let imageOutputGradient = outputGradient + image * shape.outChannels * outputPlane  // (Cout, Ho, Wo)
        if !shape.isPointwise {
            imageGradient.update(repeating: 0, count: shape.inChannels * inputPlane)
        }
        for group in 0..<shape.groups {
            let groupGradient = imageGradient + group * groupInChannels * inputPlane  // (Cin/g, H, W)
            let groupWeight = weight + group * groupOutChannels * columnRows  // (Cout/g, Cin/g*kh*kw)
            let groupOutputGradient = imageOutputGradient + group * groupOutChannels * outputPlane  // (Cout/g, Ho*Wo)
            if shape.isPointwise {
                // (Cin/g, H*W) = (Cout/g, Cin/g)ᵀ · (Cout/g, H*W)
                parallelSgemm(
                    transposeA: true, m: columnRows, n: outputPlane, k: groupOutChannels,
                    a: groupWeight, lda: columnRows, b: groupOutputGradient, ldb: outputPlane,
                    beta: 0, c: groupGradient, ldc: outputPlane)
                continue
            }
            for bandStart in stride(from: 0, to: outputHeight, by: bandRows) {
                let band = bandStart..<min(bandStart + bandRows, outputHeight)
                let bandColumns = band.count * outputWidth
                // (Cin/g*kh*kw, band) = (Cout/g, Cin/g*kh*kw)ᵀ · (Cout/g, band)
                parallelSgemm(
                    transposeA: true, m: columnRows, n: bandColumns, k: groupOutChannels,
                    a: groupWeight, lda: columnRows, b: groupOutputGradient + bandStart * outputWidth,
                    ldb: outputPlane, beta: 0, c: workspace, ldc: bandColumns)
                forEachRange(of: groupInChannels, costPerItem: columnRows / groupInChannels * bandColumns) { channels in
                    col2im(
                        image: groupGradient + channels.lowerBound * inputPlane,
                        columns: workspace + channels.lowerBound * (columnRows / groupInChannels) * bandColumns,
                        channels: channels.count,
                        height: height, width: width, outputHeight: outputHeight, outputWidth: outputWidth,
                        band: band, shape: shape)
                }
            }
        }
    }
}

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
func im2col(
    columns: UnsafeMutablePointer<Float>,  // (C * kh * kw, band.count * Wo)
    image: UnsafePointer<Float>,  // (C, H, W)
    channels: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
    band: Range<Int>, shape: Conv2dShape
) {
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
                row += band.count * outputWidth
            }
        }
    }
}

/// Folds a band of a column matrix (output rows `band`) back onto one group of one image, adding
/// every entry to the input position it was unfolded from (the adjoint of `im2col`). Accumulates:
/// zero `image` first.
func col2im(
    image: UnsafeMutablePointer<Float>,  // (C, H, W)
    columns: UnsafePointer<Float>,  // (C * kh * kw, band.count * Wo)
    channels: Int, height: Int, width: Int, outputHeight: Int, outputWidth: Int,
    band: Range<Int>, shape: Conv2dShape
) {
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
                row += band.count * outputWidth
            }
        }
    }
}

/// Sets `count` floats to 0 with an inlined loop (the counts here are mostly tiny: padding edges).
@inline(__always)
func fill(_ destination: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { destination[i] = 0 }
}
