# Stand-ins for the Vitis HLS Tcl commands (tests only; no Xilinx tools here). Each checks its arguments, logs the
# call and creates what the real tool would, as clearly marked STUB files inside the directory the test runs in.
# Usage: tclsh vitis_hls_stubs.tcl HLS_DIR    (env STUB_HLS_VERSION_CMD=<release> also defines `version`)
set ::stub_tool "Vitis HLS"
source [file join [file dirname [info script]] stub_common.tcl]

if {[info exists ::env(STUB_HLS_VERSION_CMD)]} {
    proc version {args} { log_call version {*}$args; return "Vitis HLS v$::env(STUB_HLS_VERSION_CMD) (64-bit)" }
}
proc open_project {args} {
    need {[llength $args] >= 1} "open_project needs a name"
    need {![info exists ::project]} "open_project while another project is open (close_project first)"
    foreach var {::top ::solution ::part ::period ::synthesized ::files} { unset -nocomplain $var }
    set ::project [lindex $args end]
    log_call open_project {*}$args
}
proc close_project {args} {
    need {[info exists ::project] && $args eq {}} "close_project without an open project"
    unset ::project
    log_call close_project
}
proc set_top {name} { need {[info exists ::project]} "set_top before open_project"; set ::top $name; log_call set_top $name }
proc add_files {args} {
    need {[info exists ::project]} "add_files before open_project"
    set tb 0
    for {set i 0} {$i < [llength $args]} {incr i} {
        set a [lindex $args $i]
        switch -- $a {
            -tb { set tb 1 }
            -cflags - -csimflags { incr i; need {[string match *-std=c++* [lindex $args $i]]} "cflags without a C++ standard" }
            default {
                need {![string match -* $a]} "add_files: unknown option $a"
                need {[file exists $a]} "add_files: $a does not exist"
                lappend ::files($tb) $a
            }
        }
    }
    log_call add_files {*}$args
}
proc open_solution {args} {
    need {[info exists ::top]} "open_solution before set_top"
    need {[opt $args -flow_target vivado] in {vivado vitis}} "bad -flow_target"
    set names {}
    for {set i 0} {$i < [llength $args]} {incr i} {
        set a [lindex $args $i]
        if {$a eq "-flow_target"} { incr i } elseif {![string match -* $a]} { lappend names $a }
    }
    need {[llength $names] == 1} "open_solution needs one solution name"
    set ::solution [lindex $names 0]
    log_call open_solution {*}$args
}
proc set_part {part} { need {[info exists ::solution]} "set_part before open_solution"; set ::part $part; log_call set_part $part }
proc create_clock {args} {
    set ::period [opt $args -period]
    need {[string is double -strict $::period] && $::period > 0} "create_clock without a valid -period"
    log_call create_clock {*}$args
}
proc csim_design {args} {
    need {[info exists ::files(1)] && [info exists ::part]} "csim_design without a testbench or part"
    # the testbench must read exactly the vector files added with -tb
    set tb_sources [lsearch -all -inline -glob $::files(1) *.cpp]
    need {[llength $tb_sources] == 1} "csim_design needs one testbench source"
    set text [read_text [lindex $tb_sources 0]]
    foreach f [lsearch -all -inline -glob $::files(1) *.bin] {
        need {[string first "\"[file tail $f]\"" $text] >= 0} "testbench does not read $f"
    }
    need {[string first "$::top\(" $text] >= 0} "testbench does not call $::top"
    log_call csim_design {*}$args
}
proc csynth_design {args} {
    need {[info exists ::part] && [info exists ::period]} "csynth without part/clock"
    set found 0
    foreach f $::files(0) { if {[string first "void $::top\(" [read_text $f]] >= 0} { set found 1 } }
    need {$found} "top function $::top not defined in the design files"
    set ::synthesized 1
    set report [file join $::project $::solution syn report csynth.xml]
    write_text $report "<!-- STUB written by tests/data/vitis_hls_stubs.tcl, not a Vitis HLS result -->\n<profile><UserAssignments><Part>$::part</Part><TopModelName>$::top</TopModelName><TargetClockPeriod>$::period</TargetClockPeriod></UserAssignments></profile>\n"
    # One module report per layer process, with one loop at II 1, or at the II that STUB_II ("layer=ii ...") gives.
    array set slow {}
    if {[info exists ::env(STUB_II)]} { foreach item $::env(STUB_II) { lassign [split $item =] layer ii; set slow($layer) $ii } }
    foreach f $::files(0) {
        foreach {- layer} [regexp -all -inline {#include "layers/(\w+)\.h"} [read_text $f]] {
            set ii [expr {[info exists slow($layer)] ? $slow($layer) : 1}]
            write_text [file join [file dirname $report] ${layer}_csynth.xml] "<!-- STUB written by tests/data/vitis_hls_stubs.tcl, not a Vitis HLS result -->\n<profile><UserAssignments><TopModelName>$layer</TopModelName></UserAssignments><PerformanceEstimates><SummaryOfLoopLatency><${layer}_loop><TripCount>100</TripCount><PipelineII>$ii</PipelineII><PipelineDepth>3</PipelineDepth></${layer}_loop></SummaryOfLoopLatency></PerformanceEstimates></profile>\n"
        }
    }
    log_call csynth_design {*}$args
}
proc cosim_design {args} {
    need {[info exists ::synthesized]} "cosim_design before csynth_design"
    set tb [lsearch -inline -glob $::files(1) *testbench.cpp]
    foreach f [lsearch -all -inline -glob $::files(1) *.bin] {
        need {[file dirname $f] eq [file dirname $tb]} "cosim_design: $f is not beside the testbench $tb"
    }
    need {[opt $args -rtl verilog] in {verilog vhdl}} "cosim_design -rtl must be verilog or vhdl"
    log_call cosim_design {*}$args
}
proc export_design {args} {
    need {[info exists ::synthesized]} "export_design before csynth_design"
    need {[opt $args -format] eq "ip_catalog"} "export_design -format must be ip_catalog"
    set vendor [opt $args -vendor xilinx.com]
    set library [opt $args -library hls]
    set ipversion [opt $args -version 1.0]
    set name [opt $args -ipname $::top]
    # The IP's stream ports and widths, as HLS would derive them from the top's INTERFACE pragmas and signature.
    set ports {}
    set header [read_text top.h]
    foreach f $::files(0) {
        foreach {- port} [regexp -all -inline {#pragma HLS INTERFACE axis port=(\w+)} [read_text $f]] {
            need {[regexp "AxisWord<(\[0-9\]+)> > &$port\\M" $header -> width]} "no AxisWord width for port $port"
            lappend ports $port $width
        }
    }
    set dir [file join $::project $::solution impl ip]
    write_text [file join $dir component.xml] "<!-- STUB component.xml (tests/data/vitis_hls_stubs.tcl) -->\nvlnv $vendor:$library:$name:$ipversion\naxis $ports\n"
    write_text [file join $dir "[string map {. _} $vendor]_${library}_${name}_[string map {. _} $ipversion].zip"] "STUB, not an IP archive\n"
    log_call export_design {*}$args
}
rename exit __real_exit
proc exit {{code 0}} {
    if {$code != 0} { __real_exit $code }  ;# tclsh itself calls exit 1 after an uncaught error
    puts "DONE top=$::top part=$::part period=$::period"
    __real_exit 0
}

cd [lindex $argv 0]
source run_hls.tcl
error "run_hls.tcl did not call exit"
