//! A memory limit per plugin instance: wasmer's base tunables with every linear memory's
//! maximum lowered to the plugin's `max_memory`. `memory.grow` past it fails inside the guest
//! (its allocator then traps), and a module that asks for more at start is refused. Tables are
//! capped too: without a maximum, one `table.grow` could make the host allocate gigabytes.

use std::ptr::NonNull;

use wasmer::{
    MemoryError, MemoryStyle, MemoryType, Pages, TableStyle, TableType,
    sys::{
        BaseTunables, Tunables,
        vm::{VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition},
    },
};

/// The most elements a plugin's table may have (a Rust plugin's function table has a few dozen).
pub const MAX_TABLE_ELEMENTS: u32 = 10_000;

/// [`BaseTunables`] with a cap on each memory's and each table's size.
pub struct MemoryCap {
    base: BaseTunables,
    max: Pages,
}

impl MemoryCap {
    /// A cap of `max_bytes`, rounded down to whole 64 KiB pages (at least one).
    pub fn new(max_bytes: u64) -> Self {
        let pages = (max_bytes / wasmer::WASM_PAGE_SIZE as u64).clamp(1, wasmer::WASM_MAX_PAGES as u64);
        Self { base: BaseTunables::new(), max: Pages(pages as u32) }
    }

    fn capped(&self, ty: &MemoryType) -> MemoryType {
        let mut ty = *ty;
        ty.maximum = Some(ty.maximum.map_or(self.max, |m| m.min(self.max)));
        ty
    }

    fn capped_table(ty: &TableType) -> Result<TableType, String> {
        if ty.minimum > MAX_TABLE_ELEMENTS {
            return Err(format!("a table of {} elements; at most {MAX_TABLE_ELEMENTS}", ty.minimum));
        }
        let mut ty = *ty;
        ty.maximum = Some(ty.maximum.map_or(MAX_TABLE_ELEMENTS, |m| m.min(MAX_TABLE_ELEMENTS)));
        Ok(ty)
    }

    fn admit(&self, ty: &MemoryType) -> Result<(), MemoryError> {
        if ty.minimum > self.max {
            return Err(MemoryError::Generic(format!(
                "the module needs {} KiB of memory at start; max_memory allows {} KiB",
                ty.minimum.0 as u64 * 64,
                self.max.0 as u64 * 64
            )));
        }
        Ok(())
    }
}

// wasmer's `Tunables` declares the VM-side constructors `unsafe`; these only forward to the
// base implementation with a smaller maximum.
#[allow(unsafe_code)]
impl Tunables for MemoryCap {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(&self.capped(memory))
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        self.admit(ty)?;
        self.base.create_host_memory(&self.capped(ty), style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        self.admit(ty)?;
        // SAFETY: forwarded with a smaller maximum; the caller upholds the trait's contract.
        unsafe { self.base.create_vm_memory(&self.capped(ty), style, vm_definition_location) }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(&Self::capped_table(ty)?, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        let ty = Self::capped_table(ty)?;
        // SAFETY: forwarded with a smaller maximum; the caller upholds the trait's contract.
        unsafe { self.base.create_vm_table(&ty, style, vm_definition_location) }
    }
}
