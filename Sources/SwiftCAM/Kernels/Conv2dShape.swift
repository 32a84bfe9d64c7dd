// Conv2dShape: the hyper-parameters of a 2-D convolution and the sizes derived from them (output
// size, the column matrix's bands, the images that share one GEMM, the kernels' workspace).

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

    /// Floats of workspace `conv2dForward` / `conv2dBackwardInput` need for a batch: the column
    /// matrix (`columnWorkspaceCount`), then, when convolutions run on swiftcam's own GEMM kernel,
    /// its packing scratch for `ComputeThreads.count` threads.
    public func workspaceCount(height: Int, width: Int, batch: Int) -> Int {
        let columns = columnWorkspaceCount(height: height, width: width, batch: batch)
        guard GemmKernel.isEnabled else { return columns }
        return columns + PackedGemm.scratchCount(
            parts: ComputeThreads.count, depth: columnRows,
            columns: productColumns(height: height, width: width, batch: batch))
    }

    /// The widest matrix product's columns: all images' planes when several share a product,
    /// else one image's plane, or a band of it.
    func productColumns(height: Int, width: Int, batch: Int) -> Int {
        guard let output = outputSize(height: height, width: width) else { return 0 }
        let plane = output.height * output.width
        let images = imagesPerProduct(batch: batch, outputHeight: output.height, outputWidth: output.width)
        if images > 1 { return images * plane }
        return isPointwise ? plane : bandRows(outputHeight: output.height, outputWidth: output.width) * output.width
    }

    /// Floats of column matrix: one band of one group's, `(inChannels / groups * kernelHeight *
    /// kernelWidth, bandRows * outputWidth)` (0 for 1x1 stride-1 unpadded convs); or, when several
    /// images share a GEMM (`imagesPerProduct` > 1), their whole column matrix and a product of the
    /// same width, `(columnRows + outChannels / groups, images * outputPlane)`.
    public func columnWorkspaceCount(height: Int, width: Int, batch: Int) -> Int {
        guard let output = outputSize(height: height, width: width) else { return 0 }
        let images = imagesPerProduct(batch: batch, outputHeight: output.height, outputWidth: output.width)
        if images > 1 {
            return (columnRows + outChannels / groups) * images * output.height * output.width
        }
        guard !isPointwise else { return 0 }
        return columnRows * bandRows(outputHeight: output.height, outputWidth: output.width) * output.width
    }

    /// Output positions a GEMM should have at least, when images can be put side by side to get
    /// there: each GEMM packs the whole weight matrix again, which for the small feature maps of
    /// the last stages (7x7 = 49 positions) costs more than the product itself.
    static let productColumnsTarget = 512

    /// How many images share one GEMM: 1 while an image's plane is large (or is cut in bands), else
    /// enough for about `productColumnsTarget` columns, at most the batch.
    public func imagesPerProduct(batch: Int, outputHeight: Int, outputWidth: Int) -> Int {
        let plane = outputHeight * outputWidth
        guard batch > 1, plane < Self.productColumnsTarget,
              isPointwise || bandRows(outputHeight: outputHeight, outputWidth: outputWidth) == outputHeight
        else { return 1 }
        return min(batch, (Self.productColumnsTarget + plane - 1) / plane)
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
