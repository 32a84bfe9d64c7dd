// Resize: bilinear resizing of Float32 planes for CAM post-processing (heatmap to image size), with
// the half-pixel convention of cv2.resize INTER_LINEAR / torch interpolate(align_corners=False)
// and the corner-aligned one of torch.nn.UpsamplingBilinear2d.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One output coordinate's two source samples and their weights along one axis.
struct BilinearTap {
    var lower: Int, upper: Int
    var lowerWeight: Float, upperWeight: Float

    /// The taps for a non-negative source coordinate, clamped to the last sample at the high edge
    /// (where, as in OpenCV, the whole weight goes to that sample). Like OpenCV, the coordinate is
    /// rounded to Float before it is split into an index and a fraction.
    @inline(__always)
    init(source: Double, inputSize: Int) {
        let coordinate = Float(source)
        let floor = coordinate.rounded(.down)
        let index = Int(floor)
        if index >= inputSize - 1 {
            lower = inputSize - 1
            upper = inputSize - 1
            lowerWeight = 1
            upperWeight = 0
        } else {
            let fraction = coordinate - floor
            lower = index
            upper = index + 1
            lowerWeight = 1 - fraction
            upperWeight = fraction
        }
    }
}

/// Resizes `planes` planes bilinearly with half-pixel centres, as `cv2.resize(..., INTER_LINEAR)` on
/// float32 and `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` without
/// antialiasing: `source = (destination + 0.5) * inputSize / outputSize - 0.5`, clamped to 0 below
/// and to the last sample above. All sizes must be positive.
public func bilinearResizeHalfPixel(
    output: UnsafeMutablePointer<Float>,  // (planes, Ho, Wo)
    input: UnsafePointer<Float>,  // (planes, H, W)
    planes: Int, inputHeight: Int, inputWidth: Int, outputHeight: Int, outputWidth: Int
) {
    let scaleHeight = Double(inputHeight) / Double(outputHeight)
    let scaleWidth = Double(inputWidth) / Double(outputWidth)
    bilinearResize(
        output: output, input: input, planes: planes,
        inputHeight: inputHeight, inputWidth: inputWidth,
        outputHeight: outputHeight, outputWidth: outputWidth,
        rowSource: { max((Double($0) + 0.5) * scaleHeight - 0.5, 0) },
        columnSource: { max((Double($0) + 0.5) * scaleWidth - 0.5, 0) })
}

/// Resizes `planes` planes bilinearly with aligned corners, as `torch.nn.UpsamplingBilinear2d`
/// (`interpolate(mode="bilinear", align_corners=True)`): `source = destination * (inputSize - 1) /
/// (outputSize - 1)`, or 0 when `outputSize` is 1. All sizes must be positive.
public func bilinearResizeAlignCorners(
    output: UnsafeMutablePointer<Float>,  // (planes, Ho, Wo)
    input: UnsafePointer<Float>,  // (planes, H, W)
    planes: Int, inputHeight: Int, inputWidth: Int, outputHeight: Int, outputWidth: Int
) {
    let scaleHeight = outputHeight > 1 ? Double(inputHeight - 1) / Double(outputHeight - 1) : 0
    let scaleWidth = outputWidth > 1 ? Double(inputWidth - 1) / Double(outputWidth - 1) : 0
    bilinearResize(
        output: output, input: input, planes: planes,
        inputHeight: inputHeight, inputWidth: inputWidth,
        outputHeight: outputHeight, outputWidth: outputWidth,
        rowSource: { Double($0) * scaleHeight },
        columnSource: { Double($0) * scaleWidth })
}

/// Bilinear resize given the source coordinate of every output row and column: interpolates along
/// the row first, then between the two rows, in Float (the order OpenCV uses).
@inline(__always)
func bilinearResize(
    output: UnsafeMutablePointer<Float>,  // (planes, Ho, Wo)
    input: UnsafePointer<Float>,  // (planes, H, W)
    planes: Int, inputHeight: Int, inputWidth: Int, outputHeight: Int, outputWidth: Int,
    rowSource: (Int) -> Double, columnSource: (Int) -> Double
) {
    withUnsafeTemporaryAllocation(of: BilinearTap.self, capacity: outputWidth) { columnTaps in
        for ox in 0..<outputWidth {
            columnTaps.initializeElement(
                at: ox, to: BilinearTap(source: columnSource(ox), inputSize: inputWidth))
        }
        for plane in 0..<planes {
            let source = input + plane * inputHeight * inputWidth
            let destination = output + plane * outputHeight * outputWidth
            for oy in 0..<outputHeight {
                let rowTap = BilinearTap(source: rowSource(oy), inputSize: inputHeight)
                let top = source + rowTap.lower * inputWidth
                let bottom = source + rowTap.upper * inputWidth
                let row = destination + oy * outputWidth
                for ox in 0..<outputWidth {
                    let tap = columnTaps[ox]
                    let upperRow = top[tap.lower] * tap.lowerWeight + top[tap.upper] * tap.upperWeight
                    let lowerRow = bottom[tap.lower] * tap.lowerWeight + bottom[tap.upper] * tap.upperWeight
                    row[ox] = upperRow * rowTap.lowerWeight + lowerRow * rowTap.upperWeight
                }
            }
        }
    }
}
