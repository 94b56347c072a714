# Stand-ins for the Vivado Tcl commands a fpgagen block_design.tcl uses (tests only; no Xilinx tools here). Each
# checks its arguments against what the real command takes, logs the call and, for the runs, writes clearly marked
# STUB files (.bit/.hwh placeholders, reports in Vivado's text layout) inside the directory the test runs in.
# Usage: tclsh vivado_stubs.tcl VIVADO_DIR
#   env STUB_VIVADO_VERSION (default 2022.1), STUB_WNS (ns, default 1.250), STUB_LUT (default 20000),
#   STUB_NO_BOARD_FILES=1 (the PYNQ-Z2 and PYNQ-Z1 board files are missing)
set ::stub_tool "Vivado"
set ::stub_dir [file normalize [file dirname [info script]]]
source [file join [file dirname [info script]] stub_common.tcl]
proc env_or {name default} { if {[info exists ::env($name)]} { return $::env($name) }; return $default }

# IPs this Vivado knows, with their interface pins and the CONFIG parameters a script may set (a typo fails).
array set ::ipdefs {
    xilinx.com:ip:processing_system7:5.5 {pins {M_AXI_GP0 S_AXI_HP0 S_AXI_HP1 S_AXI_HP2 S_AXI_HP3 FCLK_CLK0 FIXED_IO DDR
                                                IRQ_F2P}
        params {PCW_FPGA0_PERIPHERAL_FREQMHZ PCW_USE_M_AXI_GP0 PCW_USE_S_AXI_HP0 PCW_USE_S_AXI_HP1 PCW_USE_S_AXI_HP2
                PCW_USE_S_AXI_HP3 PCW_S_AXI_HP0_DATA_WIDTH PCW_S_AXI_HP1_DATA_WIDTH PCW_S_AXI_HP2_DATA_WIDTH
                PCW_S_AXI_HP3_DATA_WIDTH PCW_USE_FABRIC_INTERRUPT PCW_IRQ_F2P_INTR}}
    xilinx.com:ip:axi_dma:7.1 {pins {S_AXI_LITE M_AXI_MM2S M_AXI_S2MM M_AXIS_MM2S S_AXIS_S2MM s_axi_lite_aclk
                                     mm2s_introut s2mm_introut}
        params {c_include_sg c_sg_length_width c_include_mm2s c_include_s2mm c_m_axi_mm2s_data_width
                c_m_axis_mm2s_tdata_width c_m_axi_s2mm_data_width c_s_axis_s2mm_tdata_width c_mm2s_burst_size
                c_s2mm_burst_size c_sg_include_stscntrl_strm}}
    xilinx.com:ip:axi_dma:7.0 {pins {} params {}}
    xilinx.com:ip:axi_fifo_mm_s:4.2 {pins {S_AXI AXI_STR_RXD AXI_STR_TXD interrupt}
        params {C_USE_TX_DATA C_USE_TX_CTRL C_RX_FIFO_DEPTH C_TX_FIFO_DEPTH C_DATA_INTERFACE_TYPE}}
    xilinx.com:ip:xlconcat:2.1 {pins {In0 In1 In2 In3 dout} params {NUM_PORTS}}
    xilinx.com:ip:smartconnect:1.0 {pins {S00_AXI S01_AXI S02_AXI S03_AXI M00_AXI M01_AXI M02_AXI M03_AXI aclk aresetn}
        params {NUM_SI NUM_MI}}
    xilinx.com:ip:axi_interconnect:2.1 {pins {S00_AXI S01_AXI S02_AXI S03_AXI M00_AXI M01_AXI M02_AXI M03_AXI ACLK ARESETN}
        params {NUM_SI NUM_MI}}
}
set ::version [env_or STUB_VIVADO_VERSION 2022.1]
set ::board_files [expr {[env_or STUB_NO_BOARD_FILES 0] ? {} : {tul.com.tw:pynq-z2:part0:1.0 www.digilentinc.com:pynq-z1:part0:1.0}}]

proc version {args} { need {$args in {{} -short}} "version takes only -short"; log_call version {*}$args; return $::version }
proc get_board_parts {args} {
    set pattern [lindex $args end]
    log_call get_board_parts {*}$args
    return [lsearch -all -inline -glob $::board_files $pattern]
}
proc create_project {args} {
    need {[opt $args -part] ne ""} "create_project without -part"
    set ::part [opt $args -part]
    set names {}
    for {set i 0} {$i < [llength $args]} {incr i} {
        set a [lindex $args $i]
        if {$a eq "-part"} { incr i } elseif {![string match -* $a]} { lappend names $a }
    }
    need {[llength $names] == 2} "create_project NAME DIR expected"
    set ::project_dir [lindex $names 1]
    log_call create_project {*}$args
}
proc current_project {args} { need {[info exists ::part]} "no project"; return project }
proc current_fileset {args} { return sources_1 }
proc update_ip_catalog {args} {
    need {[info exists ::ip_repo]} "update_ip_catalog without ip_repo_paths"
    set xml [file join $::ip_repo component.xml]
    need {[file exists $xml]} "no component.xml in $::ip_repo"
    set text [read_text $xml]
    regexp {vlnv (\S+)} $text -> vlnv
    regexp {axis ([^\n]*)} $text -> ports
    set pins {ap_clk ap_rst_n}
    array set ::hls_widths $ports
    foreach {port width} $ports { lappend pins $port }
    set ::ipdefs($vlnv) [list pins $pins params {}]
    log_call update_ip_catalog {*}$args
}
proc get_ipdefs {args} {
    set pattern [lindex $args end]
    return [lsearch -all -inline -glob [array names ::ipdefs] $pattern]
}
proc set_property {args} {
    if {[lindex $args 0] eq "-dict"} {
        set pairs [lindex $args 1]
        set obj [lindex $args 2]
    } else {
        set pairs [lrange $args 0 1]
        set obj [lindex $args 2]
    }
    need {[llength $pairs] % 2 == 0} "set_property: odd -dict list"
    foreach {key value} $pairs {
        if {[string match CONFIG.* $key]} {
            need {[info exists ::cells($obj)]} "set_property CONFIG.* on $obj, which is not a block design cell"
            set param [string range $key 7 end]
            set allowed [dict get $::ipdefs([dict get $::cells($obj) vlnv]) params]
            need {$param in $allowed} "$obj has no parameter $param"
            dict set ::cells($obj) config $param $value
        } else {
            need {$key in {board_part ip_repo_paths top}} "set_property: unexpected property $key"
            if {$key eq "ip_repo_paths"} { set ::ip_repo [lindex $value 0] }
            if {$key eq "board_part"} { need {$value in $::board_files} "board_part $value not installed" }
            if {$key eq "top"} { set ::top $value }
        }
    }
    log_call set_property {*}$args
}
proc create_bd_design {name} { need {[info exists ::part]} "create_bd_design without a project"; set ::bd $name; log_call create_bd_design $name }
proc create_bd_cell {args} {
    need {[info exists ::bd]} "create_bd_cell without a block design"
    need {[opt $args -type] eq "ip"} "create_bd_cell -type ip expected"
    set vlnv [opt $args -vlnv]
    need {[info exists ::ipdefs($vlnv)]} "IP $vlnv is not in the catalog (a full VLNV with version is required)"
    set name /[lindex $args end]
    set ::cells($name) [dict create vlnv $vlnv config {}]
    log_call create_bd_cell {*}$args
    return $name
}
proc pin_exists {path} {
    set parts [split [string trimleft $path /] /]
    need {[llength $parts] == 2} "pin path $path is not cell/pin"
    set cell /[lindex $parts 0]
    need {[info exists ::cells($cell)]} "no cell $cell"
    need {[lindex $parts 1] in [dict get $::ipdefs([dict get $::cells($cell) vlnv]) pins]} "cell $cell has no pin [lindex $parts 1]"
    return /[join $parts /]
}
proc get_bd_intf_pins {args} {
    if {[lindex $args 0] ne "-of_objects"} {
        need {[llength $args] == 1} "get_bd_intf_pins PATH or -of_objects NET \[-filter {MODE == ..}\] expected"
        return [pin_exists [lindex $args 0]]
    }
    set net [lindex $args 1]
    need {[info exists ::net_pins($net)]} "get_bd_intf_pins -of_objects: no interface net '$net'"
    set pins $::net_pins($net)
    if {[opt $args -filter] ne ""} {
        need {[regexp {^MODE == (Master|Slave)$} [opt $args -filter] -> mode]} "unsupported -filter [opt $args -filter]"
        set pins [lmap pin $pins { expr {[pin_mode $pin] eq $mode ? $pin : [continue]} }]
    }
    return $pins
}
proc get_bd_pins {path} { return [pin_exists $path] }
# AXI interface nets: ::intf_net(pin) = net name, ::net_pins(net) = its pins. A pin's mode follows its name
# (M_AXI_*, M00_AXI: master; S_AXI_*, S00_AXI: slave), as the IPs here name them.
proc pin_mode {pin} { return [expr {[string match M* [lindex [split $pin /] end]] ? "Master" : "Slave"}] }
proc intf_connect {a b} {
    foreach pin [list $a $b] { need {![info exists ::intf_net($pin)]} "$pin is already connected" }
    set net "net[incr ::net_count]"
    set ::net_pins($net) [list $a $b]
    set ::intf_net($a) $net
    set ::intf_net($b) $net
}
proc free_port {cell prefix} {
    for {set i 0} {$i < 4} {incr i} {
        set pin $cell/[format %s%02d_AXI $prefix $i]
        if {![info exists ::intf_net($pin)]} { return $pin }
    }
    error "stub check failed: $cell has no free $prefix port"
}
# What Vivado's bd_rule:axi4 does: automation runs on a pin that is not connected yet. With the slave free it puts an
# interconnect between the pair (the master's existing one, or a new one as intc_ip says); with the slave already
# behind an interconnect, the call must target the master and name that interconnect in intc_ip.
proc axi4_automation {master slave intc target} {
    pin_exists $master
    pin_exists $slave
    need {$target in [list $master $slave]} "apply_bd_automation on $target, which is neither Master nor Slave"
    need {![info exists ::intf_net($target)]} "apply_bd_automation on $target, which is already connected (Vivado offers no automation there): apply it to the unconnected master pin, with intc_ip naming the existing interconnect"
    if {[info exists ::intf_net($slave)]} {
        set driver [lsearch -inline -exact -not $::net_pins($::intf_net($slave)) $slave]
        set existing /[lindex [split $driver /] 1]
        need {$intc eq $existing} "intc_ip '$intc' is not $existing, the interconnect already in front of $slave"
        intf_connect $master [free_port $existing S]
        return
    }
    if {[info exists ::intf_net($master)]} {
        set existing /[lindex [split [lsearch -inline -exact -not $::net_pins($::intf_net($master)) $master] /] 1]
        need {$intc in [list Auto $existing]} "intc_ip '$intc' for $master, which already drives $existing"
        intf_connect [free_port $existing M] $slave
        return
    }
    switch -- $intc {
        "New AXI SmartConnect" { set name axi_smc; set vlnv xilinx.com:ip:smartconnect:1.0 }
        "Auto" - "New AXI Interconnect" {
            set name [expr {$master eq "/ps7/M_AXI_GP0" ? "ps7_0_axi_periph" : "axi_mem_intercon"}]
            set vlnv xilinx.com:ip:axi_interconnect:2.1
        }
        default { error "stub check failed: intc_ip '$intc' names no interconnect and $slave is not connected" }
    }
    need {![info exists ::cells(/$name)]} "automation would create /$name twice"
    set ::cells(/$name) [dict create vlnv $vlnv config {}]
    intf_connect $master /$name/S00_AXI
    intf_connect /$name/M00_AXI $slave
}
proc apply_bd_automation {args} {
    set rule [opt $args -rule]
    need {$rule in {xilinx.com:bd_rule:processing_system7 xilinx.com:bd_rule:axi4 xilinx.com:bd_rule:clkrst}} "unknown rule $rule"
    set config [opt $args -config]
    need {[llength $config] % 2 == 0} "apply_bd_automation -config is not a key/value list"
    if {$rule eq "xilinx.com:bd_rule:axi4"} {
        axi4_automation [dict get $config Master] [dict get $config Slave] [dict get $config intc_ip] [lindex $args end]
        lappend ::axi_links [list [dict get $config Master] [dict get $config Slave]]
    }
    if {$rule eq "xilinx.com:bd_rule:clkrst"} { pin_exists [dict get $config Clk]; set ::accel_clocked 1 }
    log_call apply_bd_automation {*}$args
}
proc get_bd_intf_nets {args} {
    need {[lindex $args 0] eq "-of_objects" && [llength $args] == 2} "get_bd_intf_nets -of_objects PIN expected"
    set pin [lindex $args 1]
    return [expr {[info exists ::intf_net($pin)] ? $::intf_net($pin) : ""}]
}
proc get_bd_cells {args} {
    need {[lindex $args 0] eq "-of_objects" && [llength $args] == 2} "get_bd_cells -of_objects PIN expected"
    set cells {}
    foreach pin [lindex $args 1] { lappend cells /[lindex [split [pin_exists $pin] /] 1] }
    return [lsort -unique $cells]
}
# Scalar nets (the interrupts): ::scalar_net(pin) = the pins it is joined to.
proc connect_bd_net {args} {
    need {[llength $args] >= 2} "connect_bd_net needs two pins"
    foreach pin $args {
        pin_exists $pin
        lassign [split [string trimleft $pin /] /] cell port
        if {$port eq "IRQ_F2P"} {
            set config [dict get $::cells(/$cell) config]
            need {[dict exists $config PCW_USE_FABRIC_INTERRUPT] && [dict get $config PCW_USE_FABRIC_INTERRUPT] == 1 &&
                  [dict exists $config PCW_IRQ_F2P_INTR] && [dict get $config PCW_IRQ_F2P_INTR] == 1} \
                "IRQ_F2P connected without PCW_USE_FABRIC_INTERRUPT and PCW_IRQ_F2P_INTR"
        }
        if {[regexp {^In([0-9]+)$} $port -> k]} {
            set config [dict get $::cells(/$cell) config]
            need {[dict exists $config NUM_PORTS] && $k < [dict get $config NUM_PORTS]} "/$cell/$port beyond NUM_PORTS"
        }
        lappend ::scalar_net($pin) {*}[lsearch -all -inline -exact -not $args $pin]
    }
    log_call connect_bd_net {*}$args
}
# Where a DMA interrupt ends: through an xlconcat input to its dout, and on to the pin that takes dout.
proc irq_target {pin} {
    if {![info exists ::scalar_net($pin)]} { return "" }
    foreach other $::scalar_net($pin) {
        if {[regexp {^(/[^/]+)/In[0-9]+$} $other -> concat] && [info exists ::scalar_net($concat/dout)]} {
            return [lindex $::scalar_net($concat/dout) 0]
        }
        return $other
    }
}
proc connect_bd_intf_net {a b} {
    # an AXI-Stream link between the DMA and the accelerator: widths must agree
    foreach {dma_pin param} {/dma/M_AXIS_MM2S c_m_axis_mm2s_tdata_width /dma/S_AXIS_S2MM c_s_axis_s2mm_tdata_width} {
        if {$dma_pin in [list $a $b]} {
            set other [expr {$a eq $dma_pin ? $b : $a}]
            set port [lindex [split $other /] end]
            need {[info exists ::hls_widths($port)]} "$other is not an AXI-Stream port of the accelerator"
            need {[dict get $::cells(/dma) config $param] == $::hls_widths($port)} "DMA $param != width of $other"
        }
    }
    intf_connect $a $b
    lappend ::stream_links [list $a $b]
    log_call connect_bd_intf_net $a $b
}
proc assign_bd_address {args} { set ::addressed 1; log_call assign_bd_address {*}$args }
proc validate_bd_design {args} {
    need {[info exists ::addressed] && [info exists ::accel_clocked]} "validate_bd_design: unassigned addresses or unclocked IP"
    need {[llength $::stream_links] == 3} "validate_bd_design: expected 3 stream links"
    foreach pin {/ps7/M_AXI_GP0 /ps7/S_AXI_HP0 /dma/S_AXI_LITE /dma/M_AXI_MM2S /dma/M_AXI_S2MM /status_fifo/S_AXI} {
        need {[info exists ::intf_net($pin)]} "validate_bd_design: $pin is not connected"
    }
    foreach pin {/dma/mm2s_introut /dma/s2mm_introut} {
        need {[irq_target $pin] eq "/ps7/IRQ_F2P"} "validate_bd_design: $pin does not reach /ps7/IRQ_F2P"
    }
    set ::validated 1
    log_call validate_bd_design {*}$args
}
proc save_bd_design {args} { log_call save_bd_design {*}$args }
proc get_files {pattern} { need {[info exists ::bd] && $pattern eq "$::bd.bd"} "get_files: no $pattern"; return $pattern }
proc make_wrapper {args} {
    need {[info exists ::validated]} "make_wrapper before validate_bd_design"
    need {"-top" in $args && [opt $args -files] ne ""} "make_wrapper -files BD -top expected"
    set path [file join $::project_dir fpgagen.gen sources_1 bd $::bd hdl ${::bd}_wrapper.v]
    write_text $path "// STUB wrapper (tests/data/vivado_stubs.tcl)\n"
    log_call make_wrapper {*}$args
    return $path
}
proc add_files {args} {
    need {[file exists [lindex $args end]]} "add_files: [lindex $args end] does not exist"
    set ::wrapper_added 1
    log_call add_files {*}$args
}
proc launch_runs {args} {
    need {[info exists ::wrapper_added] && [info exists ::top]} "launch_runs before the wrapper is the top"
    need {[lindex $args 0] eq "impl_1" && [opt $args -to_step] eq "write_bitstream"} "launch_runs impl_1 -to_step write_bitstream expected"
    need {[string is integer -strict [opt $args -jobs]]} "launch_runs -jobs must be an integer"
    write_text [file join $::project_dir fpgagen.runs impl_1 ${::top}.bit] "STUB bitstream placeholder, not a bitstream\n"
    write_text [file join $::project_dir fpgagen.gen sources_1 bd $::bd hw_handoff $::bd.hwh] "<!-- STUB hwh placeholder -->\n"
    set ::launched 1
    log_call launch_runs {*}$args
}
proc wait_on_run {run} { need {[info exists ::launched]} "wait_on_run before launch_runs"; log_call wait_on_run $run }
proc get_runs {name} { return $name }
proc get_timing_paths {args} { return path0 }
proc get_property {name obj} {
    switch -- $name {
        PROGRESS { return "100%" }
        STATUS { return "write_bitstream Complete!" }
        SLACK { return [env_or STUB_WNS 1.250] }
    }
    error "stub: get_property $name not modelled"
}
proc open_run {run} { need {[info exists ::launched]} "open_run before launch_runs"; set ::opened 1; log_call open_run $run }
proc report_timing_summary {args} {
    need {[info exists ::opened]} "report before open_run"
    set wns [env_or STUB_WNS 1.250]
    write_text [opt $args -file] [string map [list @WNS@ $wns] [read_text [file join $::stub_dir synth_fixtures timing_summary.rpt]]]
    log_call report_timing_summary {*}$args
}
proc report_utilization {args} {
    need {[info exists ::opened]} "report before open_run"
    set lut [env_or STUB_LUT 20000]
    write_text [opt $args -file] [string map [list @LUT@ $lut] [read_text [file join $::stub_dir synth_fixtures utilization.rpt]]]
    log_call report_utilization {*}$args
}
rename exit __real_exit
proc exit {{code 0}} {
    if {$code != 0} { __real_exit $code }  ;# tclsh itself calls exit 1 after an uncaught error
    foreach cell [lsort [array names ::cells]] { puts "CELL $cell [dict get $::cells($cell) vlnv] [dict get $::cells($cell) config]" }
    foreach link $::axi_links { puts "AXI [join $link { -> }]" }
    foreach link $::stream_links { puts "AXIS [join $link { -> }]" }
    foreach net [lsort -dictionary [array names ::net_pins]] { puts "NET [join $::net_pins($net) { -- }]" }
    foreach pin {/dma/mm2s_introut /dma/s2mm_introut} { puts "IRQ $pin -> [irq_target $pin]" }
    puts "DONE part=$::part"
    __real_exit 0
}

set ::axi_links {}
set ::stream_links {}
set ::net_count 0
cd [lindex $argv 0]
source block_design.tcl
error "block_design.tcl did not call exit"
