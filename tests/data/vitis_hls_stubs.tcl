# Stand-ins for the Vitis HLS Tcl commands: each checks its arguments and logs the call, so a generated
# run_hls.tcl can be exercised with plain tclsh (no Xilinx tools here). Any misuse is a Tcl error.
set ::calls {}
proc log_call {args} { lappend ::calls $args; puts "CALL $args" }
proc need {cond msg} { if {![uplevel 1 [list expr $cond]]} { error "stub check failed: $msg" } }

proc open_project {args} {
    need {[llength $args] >= 1} "open_project needs a name"
    set ::project [lindex $args end]
    log_call open_project {*}$args
}
proc set_top {name} { need {[info exists ::project]} "set_top before open_project"; set ::top $name; log_call set_top $name }
proc add_files {args} {
    need {[info exists ::project]} "add_files before open_project"
    set tb 0
    for {set i 0} {$i < [llength $args]} {incr i} {
        set a [lindex $args $i]
        switch -- $a {
            -tb { set tb 1 }
            -cflags { incr i; need {[string match *-std=c++* [lindex $args $i]]} "cflags without a C++ standard" }
            default { need {[file exists $a]} "add_files: $a does not exist"; lappend ::files($tb) $a }
        }
    }
    log_call add_files {*}$args
}
proc open_solution {args} { need {[info exists ::top]} "open_solution before set_top"; set ::solution 1; log_call open_solution {*}$args }
proc set_part {part} { need {[info exists ::solution]} "set_part before open_solution"; set ::part $part; log_call set_part $part }
proc create_clock {args} {
    set i [lsearch $args -period]
    need {$i >= 0} "create_clock without -period"
    set ::period [lindex $args [expr {$i + 1}]]
    need {[string is double $::period] && $::period > 0} "bad clock period"
    log_call create_clock {*}$args
}
proc csim_design {args} { need {[info exists ::files(1)]} "csim_design without a testbench"; log_call csim_design {*}$args }
proc csynth_design {args} { need {[info exists ::part] && [info exists ::period]} "csynth without part/clock"; log_call csynth_design {*}$args }
proc export_design {args} { need {[lsearch $args -format] >= 0} "export_design without -format"; log_call export_design {*}$args }
rename exit __real_exit
proc exit {args} { puts "DONE top=$::top part=$::part period=$::period"; __real_exit 0 }

cd [lindex $argv 0]
source run_hls.tcl
error "run_hls.tcl did not call exit"
