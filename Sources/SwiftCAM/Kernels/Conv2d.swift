// Conv2d: 2-D convolution for NCHW Float32 tensors, forward (with optional bias and fused ReLU)
// and gradient with respect to the input, by im2col / col2im and matrix products: the forward
// ones on swiftcam's own kernel over pre-packed weights where it runs (ConvolutionProduct.swift,
// PackedGemm.swift), else OpenBLAS sgemm, as for the backward ones. The column matrix is built a
// band of output rows at a time so that it stays in L2 between im2col and the GEMM. Every step is
// split across threads (see Parallel.swift): im2col / col2im and the bias pass by channel ranges,
// the GEMMs by blocks of rows or columns. Small feature maps of several images share one GEMM
// (Conv2dSideBySide.swift).
// Batch norm is folded into the weights by the caller, so it does not appear here.


/// Computes `output = conv(input, weight) + bias + residual`, then `max(output, 0)` when
/// `applyReLU` is set (a ResNet block's last convolution, shortcut addition and ReLU in one pass).
///
/// Zero padding, cross-correlation as in PyTorch. `bias` and `residual` may be nil. With
/// `packedWeight` (the same weights, see PackedWeights) the products run on swiftcam's own kernel,
/// which also adds bias, shortcut and ReLU as it stores; else on OpenBLAS. The shape must be valid
/// and the input large enough (`shape.outputSize` non-nil); `workspace` holds at least
/// `shape.workspaceCount(height:width:batch:)` floats. `output` must not overlap the other buffers.
public func conv2dForward(
    output: UnsafeMutablePointer<Float>,  // (N, Cout, Ho, Wo)
    input: UnsafePointer<Float>,  // (N, Cin, H, W)
    weight: UnsafePointer<Float>,  // (Cout, Cin / groups, kh, kw)
    packedWeight: PackedWeights? = nil,
    bias: UnsafePointer<Float>?,  // (Cout)
    residual: UnsafePointer<Float>? = nil,  // (N, Cout, Ho, Wo)
    batch: Int, height: Int, width: Int, shape: Conv2dShape,
    applyReLU: Bool,
    workspace: UnsafeMutableBufferPointer<Float>  // see Conv2dShape.workspaceCount
) {
    guard let (outputHeight, outputWidth) = shape.outputSize(height: height, width: width) else { return }
    let columnCount = shape.columnWorkspaceCount(height: height, width: width, batch: batch)
    let product = ConvolutionProduct(
        weight: weight, packedWeight: packedWeight, shape: shape,
        scratch: PackedGemm.alignedScratch(UnsafeMutableBufferPointer(rebasing: workspace[min(columnCount, workspace.count)...])))
    let layouts = SideBySideLayout.layouts(shape: shape, height: height, width: width, batch: batch)
    if !layouts.isEmpty {
        for layout in layouts {
            conv2dForwardSideBySide(
                output: output, input: input, product: product, bias: bias, residual: residual, layout: layout,
                applyReLU: applyReLU, workspace: workspace.baseAddress!)
        }
        return
    }
    let groupInChannels = shape.inChannels / shape.groups
    let groupOutChannels = shape.outChannels / shape.groups
    let inputPlane = height * width
    let outputPlane = outputHeight * outputWidth
    let columnRows = shape.columnRows
    let bandRows = shape.bandRows(outputHeight: outputHeight, outputWidth: outputWidth)

    let workspace = workspace.baseAddress!

    for image in 0..<batch {
        let imageInput = input + image * shape.inChannels * inputPlane  // (Cin, H, W)
        let imageOutput = output + image * shape.outChannels * outputPlane  // (Cout, Ho, Wo)
        let imageResidual = residual.map { $0 + image * shape.outChannels * outputPlane }  // (Cout, Ho, Wo)
        for group in 0..<shape.groups {
            let groupInput = imageInput + group * groupInChannels * inputPlane  // (Cin/g, H, W)
            let groupOutput = imageOutput + group * groupOutChannels * outputPlane  // (Cout/g, Ho*Wo)
            let epilogue = GemmEpilogue(
                bias: bias.map { $0 + group * groupOutChannels },
                residual: imageResidual.map { $0 + group * groupOutChannels * outputPlane },
                residualStride: outputPlane, applyReLU: applyReLU)
            if shape.isPointwise {
                // (Cout/g, H*W) = (Cout/g, Cin/g) · (Cin/g, H*W)
                product.multiply(group: group, n: outputPlane, b: groupInput, ldb: outputPlane,
                                 c: groupOutput, ldc: outputPlane, epilogue: epilogue)
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
                product.multiply(group: group, n: bandColumns, b: workspace, ldb: bandColumns,
                                 c: groupOutput + bandStart * outputWidth, ldc: outputPlane,
                                 epilogue: epilogue.advanced(columns: bandStart * outputWidth))
            }
        }
        if !product.appliesEpilogue {
            forEachRange(of: shape.outChannels, costPerItem: outputPlane) { channels in
                convolutionEpilogue(
                    imageOutput, channels: channels, spatial: outputPlane, bias: bias, residual: imageResidual,
                    applyReLU: applyReLU)
            }
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
    workspace: UnsafeMutablePointer<Float>  // see Conv2dShape.workspaceCount
) {
    guard let (outputHeight, outputWidth) = shape.outputSize(height: height, width: width) else { return }
    let layouts = SideBySideLayout.layouts(shape: shape, height: height, width: width, batch: batch)
    if !layouts.isEmpty {
        for layout in layouts {
            conv2dBackwardInputSideBySide(
                inputGradient: inputGradient, outputGradient: outputGradient, weight: weight, layout: layout,
                workspace: workspace)
        }
        return
    }
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

