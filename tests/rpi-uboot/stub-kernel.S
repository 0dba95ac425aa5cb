// Stand-in arm64 "kernel" for tests/rpi-uboot: an Image header booti accepts, then it prints
// its slot (SLOT, 'A' or 'B', from --defsym) and the bootargs U-Boot passed in the DTB (x0)
// on the mini UART (U-Boot's console on the Pi 3), and spins. The test stops QEMU.
// Assembled with: aarch64-linux-gnu-as --defsym SLOT=0x41 --defsym UART=0x3f215040
        .text
        .globl _start
_start:
        b       start
        .long   0
        .quad   0x80000                 // text_offset
        .quad   0x10000                 // image_size
        .quad   0x2                     // flags: little endian, 4K pages
        .quad   0, 0, 0
        .long   0x644d5241              // "ARM\x64"
        .long   0
start:
        mov     x19, x0
        ldr     x20, =UART
        adr     x1, banner
        bl      puts
        mov     w9, #SLOT
        bl      putc
        adr     x1, args
        bl      puts
        ldr     w2, [x19, #4]           // FDT totalsize, big endian
        rev     w2, w2
        add     x3, x19, x2
        mov     x4, x19
scan:   cmp     x4, x3
        b.hs    none
        adr     x5, marker
        mov     x6, x4
1:      ldrb    w7, [x5], #1
        cbz     w7, found
        ldrb    w8, [x6], #1
        cmp     w7, w8
        b.ne    2f
        b       1b
2:      add     x4, x4, #1
        b       scan
found:  mov     x1, x4
        bl      puts
        b       done
none:   adr     x1, nomark
        bl      puts
done:   adr     x1, endmark
        bl      puts
hang:   wfe
        b       hang

puts:   mov     x21, x30
3:      ldrb    w9, [x1], #1
        cbz     w9, 4f
        bl      putc
        b       3b
4:      mov     x30, x21
        ret
putc:   ldr     w10, [x20, #0x14]       // AUX_MU_LSR: bit 5 = transmitter empty
        tbz     w10, #5, putc
        str     w9, [x20]
        ret

banner: .asciz  "\r\nSTUB-KERNEL slot="
args:   .asciz  " bootargs="
marker: .asciz  "fleettest"
nomark: .asciz  "(no fleettest marker)"
endmark: .asciz "\r\nSTUB-END\r\n"
        .ltorg
