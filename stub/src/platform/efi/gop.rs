//! The current GOP mode, for `screen_info` (efifb).

use uefi::boot::{self, OpenProtocolAttributes, OpenProtocolParams};
use uefi::proto::console::gop::{GraphicsOutput, PixelFormat};
use zboot_stub::arch::current::boot_params::{GopMode, PixelLayout};

/// The mode of the first GOP, or `None` without one.
pub fn current_mode() -> Option<GopMode> {
    let handle = boot::get_handle_for_protocol::<GraphicsOutput>().ok()?;
    // SAFETY: GetProtocol does not disconnect the console driver that also uses this GOP
    // (an exclusive open would); we only read mode information.
    let mut gop = unsafe {
        boot::open_protocol::<GraphicsOutput>(
            OpenProtocolParams {
                handle,
                agent: boot::image_handle(),
                controller: None,
            },
            OpenProtocolAttributes::GetProtocol,
        )
    }
    .ok()?;
    let info = gop.current_mode_info();
    let layout = match info.pixel_format() {
        PixelFormat::Rgb => PixelLayout::Rgb,
        PixelFormat::Bgr => PixelLayout::Bgr,
        PixelFormat::Bitmask => {
            let m = info.pixel_bitmask()?;
            PixelLayout::Bitmask([m.red, m.green, m.blue, m.reserved])
        }
        PixelFormat::BltOnly => PixelLayout::BltOnly,
    };
    let (width, height) = info.resolution();
    let stride = info.stride();
    let mut fb = gop.frame_buffer();
    Some(GopMode {
        fb_base: fb.as_mut_ptr() as u64,
        fb_size: fb.size() as u64,
        width: width as u32,
        height: height as u32,
        pixels_per_scan_line: stride as u32,
        layout,
    })
}
